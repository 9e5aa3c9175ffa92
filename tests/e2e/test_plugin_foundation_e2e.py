"""The plugin inside the real Claude Code CLI: loading, its MCP server, checkpoints."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .harness import ClaudeRun, ScriptedModel, text, tool_use, validate_plugin
from .plugin_env import MCP_PREFIX, SERVER, plugin_data, run_plugin


def test_plugin_validates(repo_root: Path, claude_bin: Path) -> None:
    rc, output = validate_plugin(repo_root, claude_bin=claude_bin)
    assert rc == 0, output
    assert "Validation passed" in output


def test_plugin_loads_with_its_server_connected(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path) -> None:
    scripted_model.main([text("ready")])
    run = run_plugin(run_claude, repo_root, "hello")
    assert run.mcp_server_status(SERVER) == "connected", run.mcp_servers
    assert f"{MCP_PREFIX}__checkpoint_save" in run.tools
    assert f"{MCP_PREFIX}__policy_check" in run.tools
    run.assert_success()


def test_model_saves_and_loads_a_checkpoint_through_the_server(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    state = {"wave": "w-1", "done": ["a", "b"], "attempts": {"c": 2}}
    scripted_model.main([
        tool_use(f"{MCP_PREFIX}__checkpoint_save", {"name": "e2e-wave", "state": state}),
        tool_use(f"{MCP_PREFIX}__checkpoint_load", {"name": "e2e-wave"}),
        text("restored"),
    ])
    run = run_plugin(run_claude, repo_root, "checkpoint it", allowed_tools=[MCP_PREFIX])
    run.assert_success()
    scripted_model.assert_all_served()
    results = scripted_model.tool_results("main")
    assert len(results) == 2 and not any(r.is_error for r in results), results
    loaded = json.loads(results[1].text)
    assert loaded["state"] == state
    assert loaded["fell_back"] is False
    # The same state is on disk, in the plugin's data folder, behind an intact chain.
    db = plugin_data(claude_dirs["home"]) / "state.db"
    verify = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "--db", str(db),
                             "audit", "verify"], capture_output=True, text=True, check=False,
                            cwd=repo_root)
    assert verify.returncode == 0, verify.stderr
