"""The first session after `claude plugin install`, on a machine whose `python3` lacks the
plugin's dependencies: the orchestrator server is connected from the start (never failed),
Agent calls wait for the service or are denied with the reason (never unchecked), the first
protected Agent call comes once the environment is built, and no second environment
appears anywhere. It builds the real environment with pip, so it takes a minute or two."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from smart_orchestrator.scripted import ModelRequest, Turn

from .harness import ClaudeRun, ScriptedModel, agent_call, text
from .plugin_env import PLUGIN

MAX_ATTEMPTS = 40


def _base_python() -> str:
    """An interpreter without the dependencies: the one this test environment was made
    from (a virtual environment's base)."""
    base = getattr(sys, "_base_executable", "") or shutil.which("python3") or ""
    probe = subprocess.run([base, "-c", "import mcp"], capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.skip(f"{base} already has the dependencies")
    return base


def _install(claude_bin: Path, repo_root: Path, home: Path, env: dict[str, str]) -> Path:
    source = home.parent / "marketplace"
    shutil.copytree(repo_root, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "__pycache__", "*.egg-info", ".mypy_cache", ".pytest_cache"))
    for args in (["plugin", "marketplace", "add", str(source)],
                 ["plugin", "install", f"{PLUGIN}@{PLUGIN}"]):
        out = subprocess.run([str(claude_bin), *args], env=env, capture_output=True, text=True,
                             timeout=120, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
    installed = json.loads((home / ".claude/plugins/installed_plugins.json").read_text())
    [entry] = installed["plugins"][f"{PLUGIN}@{PLUGIN}"]
    return Path(entry["installPath"])


def test_first_session_after_install_is_protected_and_connected(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_bin: Path, claude_dirs: dict[str, Path]) -> None:
    home, work = claude_dirs["home"], claude_dirs["work"]
    bin_dir = home.parent / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(_base_python())
    path = f"{bin_dir}{os.pathsep}/usr/bin:/bin"
    env = {"HOME": str(home), "PATH": path,
           "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR")
           or str(Path("~/.cache/pip").expanduser()),
           "SMART_ORCHESTRATOR_SERVICE_IDLE_S": "5"}
    installed_at = time.monotonic()
    _install(claude_bin, repo_root, home, {**os.environ, **env})
    attempts: list[tuple[float, bool, str]] = []

    def until_protected(request: ModelRequest) -> Turn | None:
        if request.conversation != "main":
            return None
        results = request.tool_results
        if results:
            last = results[-1]
            attempts.append((time.monotonic() - installed_at, last.is_error, last.text))
            if not last.is_error or len(attempts) >= MAX_ATTEMPTS:
                return text("done")
        return agent_call(f"FIRST-{len(attempts)}: list the files", delay=2.0 if results else 0)

    scripted_model.on(until_protected)
    scripted_model.subagent("FIRST-", [text("two files")])
    run = run_claude("go", model_url=scripted_model.base_url, cwd=work, home=home, env=env,
                     timeout=600, extra_args=["--allowedTools", "Agent"])
    assert attempts and not attempts[-1][1], f"no Agent call was ever allowed: {attempts}"
    for _, denied, reason in attempts[:-1]:
        assert denied and ("Smart Orchestrator" in reason), reason
    assert "gave no usable answer" not in run.stdout + run.stderr
    init = [json.loads(line) for line in run.stdout.splitlines()
            if '"subtype":"init"' in line.replace(" ", "")]
    servers = {s["name"]: s["status"] for s in init[0]["mcp_servers"]}
    assert servers.get(f"plugin:{PLUGIN}:orchestrator") == "connected", servers
    # One environment, in the plugin's data folder; none elsewhere.
    assert (home / f".claude/plugins/data/{PLUGIN}-{PLUGIN}/venv/bin/python").exists()
    assert not (home / ".local/share/smart-orchestrator").exists()
    print(f"first protected Agent call {attempts[-1][0]:.1f} s after install "
          f"({len(attempts) - 1} earlier calls denied with the reason)")
