from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_server
from smart_orchestrator.audit import AuditLog
from smart_orchestrator.store import SqliteStore


async def _call(name: str, args: dict[str, Any]) -> Any:
    async with Client(build_server()) as client:
        return await client.call_tool(name, args)


async def test_tools_have_structured_output_schemas(db_path: Path) -> None:
    async with Client(build_server()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("checkpoint_save", "checkpoint_load", "checkpoint_list", "audit_verify"):
        assert tools[name].output_schema is not None, name


async def test_save_then_load_round_trips(db_path: Path) -> None:
    async with Client(build_server()) as client:
        saved = await client.call_tool("checkpoint_save", {"name": "w", "state": {"a": [1, 2]}})
        assert not saved.is_error
        loaded = await client.call_tool("checkpoint_load", {"name": "w"})
    assert loaded.structured_content is not None
    assert loaded.structured_content["state"] == {"a": [1, 2]}
    assert loaded.structured_content["checkpoint"]["sha256"] == \
        saved.structured_content["checkpoint"]["sha256"]  # type: ignore[index]


@pytest.mark.parametrize(("tool", "args"), [
    ("checkpoint_save", {"name": "bad name", "state": 1}),
    ("checkpoint_save", {"name": "ok", "state": 1, "keep": 0}),
    ("checkpoint_load", {"name": 5}),
    ("checkpoint_load", {}),
    ("checkpoint_load", {"name": "never-saved"}),
])
async def test_invalid_arguments_are_tool_errors(db_path: Path, tool: str,
                                                 args: dict[str, Any]) -> None:
    result = await _call(tool, args)
    assert result.is_error
    assert "Traceback" not in result.content[0].text


async def test_corrupt_store_makes_tools_fail_with_the_reason(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"not a database at all" * 20)
    monkeypatch.setenv("SMART_ORCHESTRATOR_DB", str(db))
    result = await _call("audit_verify", {})
    assert result.is_error
    assert "not a SQLite database" in result.content[0].text
    assert db.read_bytes() == b"not a database at all" * 20


async def test_server_records_a_database_deleted_under_it_without_any_call(
        db_path: Path) -> None:
    async with Client(build_server()) as client:
        saved = await client.call_tool("checkpoint_save", {"name": "w", "state": 1})
        assert not saved.is_error
        other = SqliteStore(db_path)
        for i in range(3):
            AuditLog(other).record("x", i=i)
        # The server may have written rows of its own (its warm-up records the policy).
        witnessed = other.audit_head().events
        other.close()
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (db_path.parent / name).unlink(missing_ok=True)
        deadline, gaps = time.monotonic() + 60, []
        while not gaps and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            with contextlib.suppress(sqlite3.Error):  # not created yet
                conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
                try:
                    gaps = conn.execute("SELECT data FROM audit WHERE kind = 'audit.gap'"
                                        ).fetchall()
                finally:
                    conn.close()
        assert gaps, "the server did not notice on its own"
        result = await client.call_tool("audit_verify", {})
    gap = json.loads(gaps[0][0])
    assert (gap["lost_from"], gap["lost_to"]) == (1, witnessed)
    assert gap["cause"] == "state.db was deleted while open"
    assert result.structured_content is not None
    assert result.structured_content["exit_code"] == 3, result.structured_content
