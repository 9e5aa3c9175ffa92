"""The Markdown views behind the slash commands, and `slash` itself, which must always exit
0 (Claude Code drops a command whose `!` line fails) and say what is wrong instead."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from smart_orchestrator.audit import AuditLog
from smart_orchestrator.checkpoints import Checkpoints
from smart_orchestrator.cli import main
from smart_orchestrator.report.tables import audit_table, md_table, recent_audit
from smart_orchestrator.store import SqliteStore

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_tables_escape_pipes_flatten_lines_and_cut_long_cells() -> None:
    table = md_table(["a", "b"], [["x|y", "two\nlines"], ["z" * 300, None]])
    lines = table.splitlines()
    assert lines[:2] == ["| a | b |", "|---|---|"]
    assert lines[2] == "| x\\|y | two lines |"
    assert lines[3].endswith("... | - |") and len(lines[3]) < 160
    assert md_table(["a"], []) == "_none_"


def test_recent_audit_keeps_the_newest_events_of_a_kind_in_order(store: SqliteStore) -> None:
    audit = AuditLog(store)
    for i in range(30):
        audit.record("wave.agent_end" if i % 3 else "policy.decision", n=i, decision="allow")
    newest = recent_audit(store, limit=4)
    assert [r.seq for r in newest] == [27, 28, 29, 30]
    policy = recent_audit(store, limit=3, kind="policy.")
    assert [r.data["n"] for r in policy] == [21, 24, 27]
    assert recent_audit(store, limit=5, kind="gate_") == []  # `_` is not a LIKE wildcard
    assert "decision=allow" in audit_table(policy)


def test_slash_exits_0_and_says_why_when_there_is_nothing_to_show(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "missing" / "state.db")
    assert main(["--db", db, "slash", "checkpoint"]) == 0
    out = capsys.readouterr().out
    assert "**Could not show this:** no state database at" in out
    assert main(["--db", db, "slash", "wave", "not-a-run-or-file"]) == 0
    assert "neither a wave run id nor a plan file" in capsys.readouterr().out


def test_slash_shows_a_checkpoint_and_a_broken_chain_still_exits_0(
        db_path: Path, store: SqliteStore, capsys: pytest.CaptureFixture[str]) -> None:
    Checkpoints(store).save("nightly", {"done": ["a", "b"]})
    AuditLog(store).record("policy.decision", decision="deny")
    assert main(["slash", "checkpoint", "nightly"]) == 0
    assert '"done": [' in capsys.readouterr().out
    store.close()
    # A row edited behind the chain's back: the triggers forbid it, so drop them first.
    conn = sqlite3.connect(db_path)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET data = '{\"decision\":\"allow\"}' WHERE seq = 1")
    conn.commit()
    conn.close()
    assert main(["slash", "audit"]) == 0
    assert "audit chain BROKEN at row seq=1" in capsys.readouterr().out


def test_plugin_data_option_finds_the_plugins_store(tmp_path: Path) -> None:
    data = tmp_path / "plugin-data"
    store = SqliteStore(data / "state.db")
    Checkpoints(store).save("from-plugin", {"x": 1})
    store.close()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "smart_orchestrator.cli", "slash",
                           "--plugin-data", str(data), "checkpoint"], capture_output=True,
                          text=True, env=env, cwd=REPO_ROOT, check=False)
    assert done.returncode == 0 and "| from-plugin | 1 |" in done.stdout, done
