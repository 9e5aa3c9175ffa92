"""Two Claude Code sessions on two "machines" (their own HOME, service and host id) share
one team store with a team limit of one agent in flight."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from smart_orchestrator.policy.admission import TEAM_MAX_IN_FLIGHT
from smart_orchestrator.store.postgres import PgStore
from tests.pg import fresh_schema_dsn

from .harness import ClaudeRun, ScriptedModel, agent_call, text
from .harness import run_claude as _run_claude
from .plugin_env import plugin_env

SUBAGENT_S = 20.0  # long enough that the second session asks while the first one runs


def _machine(root: Path, name: str) -> dict[str, Path]:
    dirs = {k: root / name / k for k in ("work", "home", "cctmp")}
    for path in dirs.values():
        path.mkdir(parents=True)
    (dirs["work"] / ".claude").mkdir()
    (dirs["work"] / ".claude" / "smart-orchestrator.toml").write_text(
        "[admission]\nwait_timeout_s = 180\n")
    return dirs


def test_two_sessions_on_two_machines_share_a_team_limit_of_one(
        tmp_path: Path, claude_bin: Path, repo_root: Path) -> None:
    dsn = fresh_schema_dsn("e2e")
    setup = PgStore(dsn)
    setup.kv_set(TEAM_MAX_IN_FLIGHT, "1")
    runs: dict[str, ClaudeRun] = {}
    errors: list[BaseException] = []

    def session(name: str, model: ScriptedModel, dirs: dict[str, Path]) -> None:
        try:
            runs[name] = _run_claude(
                "delegate it", model_url=model.base_url, cwd=dirs["work"], home=dirs["home"],
                tmpdir=dirs["cctmp"], claude_bin=claude_bin, plugin_dir=repo_root,
                timeout=300, env=plugin_env({"SMART_ORCHESTRATOR_STORE": dsn,
                                             "SMART_ORCHESTRATOR_HOST_ID": f"laptop-{name}"}))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    with ScriptedModel() as model_a, ScriptedModel() as model_b:
        model_a.main([agent_call("TEAM-A: count the files"), text("a done")])
        model_a.subagent("TEAM-A", [text("A counted 3 files", delay=SUBAGENT_S)])
        model_b.main([agent_call("TEAM-B: count the lines"), text("b done")])
        model_b.subagent("TEAM-B", [text("B counted 9 lines")])
        a = threading.Thread(target=session, args=("a", model_a, _machine(tmp_path, "a")))
        b = threading.Thread(target=session, args=("b", model_b, _machine(tmp_path, "b")))
        a.start()
        # B asks only once A's agent runs: B must wait for the team's one slot.
        deadline = time.monotonic() + 240
        while not model_a.requests_for("TEAM-A") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert model_a.requests_for("TEAM-A"), "A's agent never started"
        b.start()
        for t in (a, b):
            t.join(timeout=400)
        assert not errors, errors
        for name in ("a", "b"):
            runs[name].assert_success()
        [result_a], [result_b] = model_a.tool_results("main"), model_b.tool_results("main")
        assert not result_a.is_error and "3 files" in result_a.text
        assert not result_b.is_error and "9 lines" in result_b.text
        a_end = max(r.answered_at or 0.0 for r in model_a.requests_for("TEAM-A"))
        b_start = min(r.received_at for r in model_b.requests_for("TEAM-B"))
        assert b_start >= a_end, "B's agent ran while A's held the team's only slot"

    decisions = [r for r in setup.iter_audit() if r.kind == "policy.decision"]
    assert [d.data["decision"] for d in decisions] == ["allow", "allow"], decisions
    waited = {str(d.data["session_id"]): int(d.data["waited_ms"]) for d in decisions}
    assert max(waited.values()) > 0, waited  # one of them queued for the slot
    hosts = {r.host for r in setup.leases.rows()}
    assert hosts == set(), "a lease outlived its agent"
    assert setup.audit_head().events == len(list(setup.iter_audit()))
    setup.close()
