"""The Bash sandbox of wave agents: settings, modes, and waves refused when it is required."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from smart_orchestrator.errors import ConfigError
from smart_orchestrator.store import SqliteStore
from smart_orchestrator.waves import WaveConfig, WavePlan, WaveService
from smart_orchestrator.waves.sandbox import BashSandbox, may_run_bash, probe_sandbox
from tests.wave_fakes import FixedMetrics, ScriptedRunner

ON = BashSandbox("auto", True, "on")


def _plan(*tools: list[str]) -> WavePlan:
    return WavePlan.model_validate({"tasks": [
        {"id": f"t{i}", "prompt": "p", "allowed_tools": list(t)} for i, t in enumerate(tools)]})


def test_confined_agents_get_no_escape_hatch_and_only_their_domains() -> None:
    settings = ON.settings(["registry.npmjs.org"])
    assert settings is not None
    assert settings["enabled"] and settings["failIfUnavailable"]
    assert settings["allowUnsandboxedCommands"] is False
    # allowed_tools, not the sandbox, decides whether Bash may run at all.
    assert settings["autoAllowBashIfSandboxed"] is False
    assert settings["network"] == {"allowedDomains": ["registry.npmjs.org"]}
    assert "~/.ssh" in settings["filesystem"]["denyRead"]
    hidden = ON.settings([], hidden=["/data"])
    assert hidden is not None and hidden["filesystem"]["denyRead"][-1] == "/data"
    assert BashSandbox("auto", False, "off: x").settings([]) is None
    assert BashSandbox("off", True, "off").settings([]) is None


def test_off_mode_never_probes() -> None:
    assert probe_sandbox("off") == BashSandbox(
        "off", False, "off: Bash is not confined (sandbox mode off)")


def test_bash_patterns_count_as_bash() -> None:
    assert may_run_bash(["Read", "Bash(git status:*)"]) and may_run_bash(["Bash"])
    assert not may_run_bash(["Read", "Grep", "BashOutput"])


def test_network_domains_are_checked_in_the_plan() -> None:
    WavePlan.model_validate({"tasks": [{"id": "a", "prompt": "p",
                                        "network_domains": ["*.pythonhosted.org", "pypi.org"]}]})
    with pytest.raises(ValidationError, match="network_domains"):
        WavePlan.model_validate({"tasks": [{"id": "a", "prompt": "p",
                                            "network_domains": ["http://evil/x"]}]})


def test_the_mode_comes_from_the_environment() -> None:
    assert WaveConfig.from_env({}).sandbox == "auto"
    assert WaveConfig.from_env({"SMART_ORCHESTRATOR_WAVE_SANDBOX": "require"}).sandbox == \
        "require"
    with pytest.raises(ConfigError, match="expected one of auto, require, off"):
        WaveConfig.from_env({"SMART_ORCHESTRATOR_WAVE_SANDBOX": "maybe"})


def test_a_required_sandbox_that_is_missing_refuses_waves_that_may_run_bash(
        tmp_path: Path) -> None:
    missing = BashSandbox("require", False, "off: Bash is not confined (bwrap not installed)")
    store = SqliteStore(tmp_path / "state.db")
    service = WaveService(store, ScriptedRunner(bash_sandbox=missing), metrics=FixedMetrics())
    try:
        with pytest.raises(ConfigError, match=r"tasks t1 may run Bash.*bwrap not installed"):
            service.spawn(_plan(["Read"], ["Bash(ls:*)"]), cwd=str(tmp_path))
        assert service.list_runs(limit=5) == [], "nothing was started or stored"
        assert service.spawn(_plan(["Read"]), cwd=str(tmp_path))  # no Bash: runs
    finally:
        service.close()
        store.close()


def test_resuming_on_a_server_without_the_required_sandbox_is_refused(
        tmp_path: Path) -> None:
    missing = BashSandbox("require", False, "off: Bash is not confined (bwrap not installed)")
    store = SqliteStore(tmp_path / "state.db")
    first = WaveService(store, ScriptedRunner(bash_sandbox=ON), metrics=FixedMetrics())
    second = WaveService(store, ScriptedRunner(bash_sandbox=missing), metrics=FixedMetrics())
    try:
        run_id = first.spawn(_plan(["Bash"]), cwd=str(tmp_path))
        assert first.wait_until_done(run_id, 60)
        # As if the first server had died mid-wave.
        with store.transaction() as conn:
            conn.execute("UPDATE wave_runs SET state = 'running' WHERE run_id = ?", (run_id,))
        with pytest.raises(ConfigError, match="tasks t0 may run Bash"):
            second.resume(run_id)
    finally:
        first.close()
        second.close()
        store.close()
