"""The CLI as a plugin user meets it: it finds the installed plugin's state by itself, a
slash command never builds a second environment, and status says whether the server is up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.beacon import ServerBeacon
from smart_orchestrator.paths import locate_data_dir
from smart_orchestrator.status import collect_status
from smart_orchestrator.store import SqliteStore

from ..conftest import REPO_ROOT

LAUNCHER = REPO_ROOT / "bin" / "smart-orchestrator"


@pytest.fixture
def plugin_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME like a user's: no Smart Orchestrator variables set."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("SMART_ORCHESTRATOR_DATA", "SMART_ORCHESTRATOR_DB", "CLAUDE_PLUGIN_DATA",
                "CLAUDE_CONFIG_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    return home


def test_the_cli_finds_the_installed_plugins_data_folder(plugin_user: Path) -> None:
    assert locate_data_dir().path == plugin_user / ".local/share/smart-orchestrator"
    data = plugin_user / ".claude/plugins/data"
    old, used = data / "smart-orchestrator-inline", data / "smart-orchestrator-team-mkt"
    for folder in (old, used):
        folder.mkdir(parents=True)
        (folder / "state.db").write_bytes(b"")
    os.utime(old / "state.db", (1_000_000, 1_000_000))
    (data / "other-plugin-x").mkdir()
    found = locate_data_dir()
    assert found.path == used and "installed plugin" in found.origin


def test_the_claude_config_dir_is_honoured(plugin_user: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    config = plugin_user / "elsewhere"
    (config / "plugins/data/smart-orchestrator-m").mkdir(parents=True)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(config))
    assert locate_data_dir().path == config / "plugins/data/smart-orchestrator-m"


def test_explicit_variables_win(plugin_user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (plugin_user / ".claude/plugins/data/smart-orchestrator-m").mkdir(parents=True)
    monkeypatch.setenv("CLAUDE_PLUGIN_DATA", str(plugin_user / "given"))
    assert locate_data_dir() == (plugin_user / "given", "$CLAUDE_PLUGIN_DATA")


def test_a_slash_command_before_setup_says_so_and_builds_nothing(plugin_user: Path) -> None:
    data = plugin_user / ".claude/plugins/data/smart-orchestrator-m"
    # -S: an interpreter without site-packages, i.e. without the dependencies, like a
    # user's python3 right after `claude plugin install`.
    out = subprocess.run([sys.executable, "-S", str(LAUNCHER), "slash", "--plugin-data",
                          str(data), "status"], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(plugin_user), "PATH": os.environ.get("PATH", "")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("Smart Orchestrator is still installing")
    assert out.stderr == "", "install messages must not reach what the model reads"
    assert not (plugin_user / ".local").exists(), "no second environment"
    assert not (data / "venv").exists(), "a short-lived command does not build it either"


def test_a_slash_command_uses_the_plugins_environment(plugin_user: Path) -> None:
    """With the private environment built, `--plugin-data` picks it, not a new one."""
    data = plugin_user / ".claude/plugins/data/smart-orchestrator-m"
    fake_python = data / "venv/bin/python"
    fake_python.parent.mkdir(parents=True)
    fake_python.write_text("#!/bin/sh\necho \"private env: $CLAUDE_PLUGIN_DATA\"\n")
    fake_python.chmod(0o755)
    stamp = subprocess.run(
        [sys.executable, "-S", "-c", "import runpy, sys; sys.argv = ['x']; "
         f"g = runpy.run_path({str(LAUNCHER)!r}, run_name='launcher'); "
         "print(g['_stamp'](g['_dependencies']()))"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    (data / "venv/.smart-orchestrator-stamp").write_text(stamp)
    out = subprocess.run([sys.executable, "-S", str(LAUNCHER), "slash", "--plugin-data",
                          str(data), "status"], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(plugin_user), "PATH": os.environ.get("PATH", "")})
    assert out.stdout.strip() == f"private env: {data}", out.stderr
    assert not (plugin_user / ".local").exists()


def test_status_says_which_servers_are_up_and_since_when(store: SqliteStore,
                                                         db_path: Path) -> None:
    AuditLog(store).record("x")
    assert collect_status(str(db_path))["servers"] == []
    beacon = ServerBeacon(db_path.parent, "0d6c9f1e-5a43-4c3e-9d7b-2f0f4b8a1c22")
    assert beacon.hold()
    try:
        status = collect_status(str(db_path))
    finally:
        beacon.release()
    [server] = status["servers"]
    assert server["pid"] == os.getpid() and server["session"] == "0d6c9f1e"
    assert server["responsive"] and server["since"] != "unknown"
    assert collect_status(str(db_path))["servers"] == [], "a released beacon is not a server"
    out = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "--db", str(db_path),
                          "status"], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert "Sessions connected (orchestrator MCP servers):** 0 (none" in out.stdout
    assert "**Service:** not running" in out.stdout
    assert json.loads(subprocess.run(
        [sys.executable, "-m", "smart_orchestrator.cli", "--db", str(db_path), "status",
         "--json"], capture_output=True, text=True, timeout=60,
        cwd=REPO_ROOT).stdout)["data_folder"]["path"] == str(db_path.parent)
