from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from mcp_server.server import build_server


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
