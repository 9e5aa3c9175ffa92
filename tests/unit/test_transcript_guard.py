"""Credentials from a session's subagent transcripts are redacted from what the main agent
reads back, whatever shape the tool result has and however the text was escaped."""

from __future__ import annotations

import json
from pathlib import Path

from smart_orchestrator.policy.transcript_guard import (
    TranscriptSecrets,
    redact_known,
    subagent_transcripts,
)

KEY = "AKIAQ3ZL7V2XW4PN6RTY"
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7v0Q3r8k2Lx9PqZm4T1yWbN5cHs8dJf2Ge6aKu0X\n"
       "-----END RSA PRIVATE KEY-----")


def _session(tmp_path: Path, *lines: object) -> str:
    main = tmp_path / "proj" / "sess.jsonl"
    sub = main.with_suffix("") / "subagents"
    sub.mkdir(parents=True)
    main.write_text("")
    (sub / "agent-a1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return str(main)


def test_finds_secrets_as_written_and_as_decoded(tmp_path: Path) -> None:
    path = _session(tmp_path, {"message": {"content": f"key {KEY}"}}, {"text": PEM})
    found = TranscriptSecrets().secrets(subagent_transcripts(path))
    assert KEY in found
    # The private key both JSON-escaped (as `cat` shows it) and decoded (as `jq -r` does).
    assert any("\\n" in s and "PRIVATE KEY" in s for s in found)
    assert any("\n" in s and "PRIVATE KEY" in s for s in found)


def test_redacts_in_place_of_every_shape(tmp_path: Path) -> None:
    known = {KEY: "aws-access-key-id"}
    read = {"type": "text", "file": {"filePath": "/x", "content": f"a {KEY} b", "numLines": 1}}
    bash = {"stdout": f"{KEY}\n{KEY}", "stderr": "", "interrupted": False}
    grep = {"mode": "content", "content": f"f:1:{KEY}", "filenames": [f"/{KEY}"]}
    for shape in (read, bash, grep):
        out, rules = redact_known(shape, known)
        assert KEY not in json.dumps(out) and rules == ["aws-access-key-id"]
        assert set(out) == set(shape)


def test_no_subagents_no_work(tmp_path: Path) -> None:
    (tmp_path / "sess.jsonl").write_text("")
    assert subagent_transcripts(str(tmp_path / "sess.jsonl")) == []
    assert subagent_transcripts("") == []


def test_rescans_a_grown_file(tmp_path: Path) -> None:
    path = _session(tmp_path, {"text": "nothing yet"})
    secrets = TranscriptSecrets()
    files = subagent_transcripts(path)
    assert secrets.secrets(files) == {}
    with files[0].open("a") as fh:
        fh.write(json.dumps({"text": f"now {KEY}"}) + "\n")
    assert KEY in secrets.secrets(files)


def _call(**args: object) -> dict[str, object]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": {"name": "policy_check", "arguments": args}}


def test_the_shim_answers_tool_results_nothing_needs(tmp_path: Path) -> None:
    from mcp_server.shim import _nothing_to_redact

    main = tmp_path / "sess.jsonl"
    main.write_text("")
    post = {"event": "PostToolUse", "tool_name": "Read", "transcript_path": str(main)}
    assert _nothing_to_redact(_call(**post))  # no subagent yet
    assert _nothing_to_redact(_call(**post, agent_id="a1"))  # a subagent's own result
    (tmp_path / "sess" / "subagents").mkdir(parents=True)
    assert not _nothing_to_redact(_call(**post))  # now the service redacts
    assert not _nothing_to_redact(_call(**{**post, "tool_name": "Agent"}))
    assert not _nothing_to_redact(_call(**{**post, "event": "PreToolUse"}))
    assert not _nothing_to_redact(_call(**{**post, "transcript_path": ""}))


def test_the_shim_withholds_a_main_result_it_cannot_have_checked(tmp_path: Path) -> None:
    import io

    from mcp_server.shim import Shim

    main = tmp_path / "sess.jsonl"
    main.write_text("")
    (tmp_path / "sess" / "subagents").mkdir(parents=True)
    shim = Shim(tmp_path, stdin=io.BytesIO(), stdout=io.BytesIO(), env={}, hold_s=0)
    response = {"stdout": f"x {KEY}", "stderr": "", "interrupted": False}
    out = shim._fail_closed({"event": "PostToolUse", "tool_name": "Bash",
                             "transcript_path": str(main),
                             "tool_response": json.dumps(response)})
    updated = out["hookSpecificOutput"]["updatedToolOutput"]
    assert set(updated) == set(response) and updated["interrupted"] is False
    assert KEY not in json.dumps(out) and "withheld" in updated["stdout"]
    # A subagent's result, or one before any subagent ran, is not held.
    assert shim._fail_closed({"event": "PostToolUse", "tool_name": "Bash", "agent_id": "a",
                              "transcript_path": str(main)}) == {}
