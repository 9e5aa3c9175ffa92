"""The output gate, the claims' input-keyed decisions, and what may be written to disk."""

from __future__ import annotations

import base64
import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.hook_output import hook_output as rendered
from smart_orchestrator.audit import sanitize
from smart_orchestrator.detect.encoded import FragmentMemory, scan_disguised
from smart_orchestrator.policy import normalize_mcp_args
from smart_orchestrator.policy.claims import (
    Undecided,
    claim_key,
    decide_once,
    seal,
    unseal,
)
from smart_orchestrator.policy.engine import _log_crash
from smart_orchestrator.policy.outputs import WITHHELD
from smart_orchestrator.store import SqliteStore

from .policy_payloads import SESSION, post_agent, pre_agent, subagent_event
from .test_policy_engine import audit_rows, make_engine

AWS_KEY = "AKIAZ3MSJV4WKQ7NTB5R"
OTHER_KEY = "AKIAQ4W7TNB5RZ3MSJV2"
PRAGMA = "  # pragma: allowlist secret"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def notification(result: str) -> dict[str, Any]:
    prompt = (f"<task-notification>\n<task-id>a1</task-id>\n<status>completed</status>\n"
              f"<result>{result}</result>\n</task-notification>")
    return {"session_id": SESSION, "hook_event_name": "UserPromptSubmit", "prompt": prompt}


def as_mcp_args(payload: dict[str, Any]) -> dict[str, Any]:
    """What the mcp_tool hook's `${...}` substitution passes for the same event."""
    args = {k: "" for k in ("event", "session_id", "tool_use_id", "tool_name", "tool_input",
                            "tool_response", "agent_id", "agent_type", "duration_ms",
                            "last_assistant_message", "stop_hook_active", "error", "trigger",
                            "prompt")}
    for key, value in payload.items():
        key = "event" if key == "hook_event_name" else key
        if key in args:
            args[key] = (json.dumps(value) if isinstance(value, dict)
                         else str(value).lower() if isinstance(value, bool) else str(value))
    return args


# -- claims: one decision per input -----------------------------------------------------

@pytest.mark.parametrize("payload", [
    pre_agent(), post_agent(), subagent_event("SubagentStop", "a1", message="hi"),
    subagent_event("SubagentStop", "a1", stop_hook_active=True), notification("done")],
    ids=["pre", "post", "stop", "stop-active", "notification"])
def test_an_mcp_hook_call_has_the_claim_key_of_its_payload(payload: dict[str, Any]) -> None:
    mcp = normalize_mcp_args(as_mcp_args(payload))
    keys = {claim_key(p["hook_event_name"], SESSION, str(p.get("tool_use_id") or ""),
                      str(p.get("agent_id") or ""), p) for p in (payload, mcp)}
    assert len(keys) == 1


def test_a_reused_agent_id_with_a_new_answer_is_decided_again(store: SqliteStore,
                                                               tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    outcomes = []
    for message in (f"the key is {AWS_KEY}", "the key is in the vault"):
        payload = subagent_event("SubagentStop", "a1", message=message)
        key = claim_key("SubagentStop", SESSION, "", "a1", payload)
        outcomes.append(decide_once(store, key,
                                    lambda p=payload: rendered(engine.handle(p))).decision)  # type: ignore[misc]
    assert outcomes[0]["decision"] == "block"
    assert outcomes[1] == {}


def test_the_claim_key_holds_no_caller_text() -> None:
    payload = subagent_event("SubagentStop", AWS_KEY, session=OTHER_KEY)
    key = claim_key(f"Evil{AWS_KEY}", OTHER_KEY, AWS_KEY, AWS_KEY, payload)
    assert AWS_KEY not in key and OTHER_KEY not in key and key.startswith("other:")


def test_a_recorded_decision_holds_no_rewritten_text(store: SqliteStore) -> None:
    updated = {"prompt": "deploy with [REDACTED:aws] and password hunter2hunter2"}
    decision = {"hookSpecificOutput": {"hookEventName": "PreToolUse",
                                       "permissionDecision": "allow", "updatedInput": updated}}
    key = claim_key("PreToolUse", SESSION, "toolu_1", "", pre_agent())
    decide_once(store, key, lambda: decision)
    [(raw,)] = store.query("SELECT decision FROM claims WHERE key = ?", (key,))
    assert "hunter2" not in raw and "sealed" in raw
    # A second delivery computes the same text from its own payload, and returns it.
    again = decide_once(store, key, lambda: {}, free_text=lambda: {"updatedInput": updated})
    assert not again.here and again.decision == decision
    with pytest.raises(Undecided, match="does not match"):
        decide_once(store, key, lambda: {}, free_text=lambda: {
            "updatedInput": {"prompt": "something else"}})
    with pytest.raises(Undecided):
        decide_once(store, key, lambda: {})


def test_unseal_refuses_a_missing_text() -> None:
    decision = seal({"hookSpecificOutput": {"updatedToolOutput": {"content": []}}})
    with pytest.raises(ValueError):
        unseal(decision, {})


def test_the_redacting_engine_reproduces_its_own_text(store: SqliteStore,
                                                       tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path, secrets={"action": "redact"})
    payload = pre_agent(f"deploy with {AWS_KEY}", tool_use_id="toolu_9")
    out = rendered(engine.handle(payload))
    assert out["hookSpecificOutput"]["updatedInput"] == \
        engine.outputs.free_text(payload)["updatedInput"]
    post = post_agent(f"the key is {AWS_KEY}")
    assert rendered(engine.handle(post))["hookSpecificOutput"]["updatedToolOutput"] == \
        engine.outputs.free_text(post)["updatedToolOutput"]


# -- the gate ---------------------------------------------------------------------------

def test_a_foreground_answer_with_a_credential_is_redacted_in_its_own_shape(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    payload = post_agent(f"Found it: {AWS_KEY}. Done.")
    out = rendered(engine.handle(payload))
    updated = out["hookSpecificOutput"]["updatedToolOutput"]
    assert set(updated) == set(payload["tool_response"])
    assert updated["content"] == [{"type": "text",
                                   "text": "Found it: [REDACTED:aws-access-key-id]. Done."}]
    assert out["decision"] == "block"


@pytest.mark.parametrize("form", [
    " ".join(AWS_KEY), AWS_KEY[::-1], codecs.encode(AWS_KEY, "rot13"),
    f"{AWS_KEY[:8]} then {AWS_KEY[8:]}"],
    ids=["spelled", "reversed", "rot13", "cut"])
def test_a_disguised_credential_withholds_the_whole_answer(
        store: SqliteStore, tmp_path: Path, form: str) -> None:
    out = rendered(make_engine(store, tmp_path).handle(post_agent(f"Decode: {form}")))
    text = out["hookSpecificOutput"]["updatedToolOutput"]["content"][0]["text"]
    assert text == WITHHELD


@pytest.mark.parametrize("form", [
    base64.b64encode(AWS_KEY.encode()).decode(), AWS_KEY.encode().hex(),
    "".join(f"\\u{ord(c):04x}" for c in AWS_KEY), "".join(f"&#{ord(c)};" for c in AWS_KEY),
    "\u200b".join(AWS_KEY), f'"{AWS_KEY[:9]}" + "{AWS_KEY[9:]}"'],
    ids=["base64", "hex", "json-escapes", "html-entities", "zero-width", "concatenated"])
def test_an_encoded_credential_is_redacted_where_it_is_written(
        store: SqliteStore, tmp_path: Path, form: str) -> None:
    # The normalised view maps the decoded key back to its encoded bytes: they are
    # replaced in place, and the rest of the answer is delivered.
    out = rendered(make_engine(store, tmp_path).handle(post_agent(f"Decode: {form} -- thanks")))
    text = out["hookSpecificOutput"]["updatedToolOutput"]["content"][0]["text"]
    assert text.startswith("Decode: ") and text.endswith(" -- thanks")
    assert "[REDACTED:aws-access-key-id]" in text
    assert form not in text and AWS_KEY[-6:] not in text


def test_an_allowlist_pragma_in_an_answer_does_not_let_the_credential_through(
        store: SqliteStore, tmp_path: Path) -> None:
    out = rendered(make_engine(store, tmp_path).handle(post_agent(f"Decode: {AWS_KEY}{PRAGMA}")))
    text = out["hookSpecificOutput"]["updatedToolOutput"]["content"][0]["text"]
    assert AWS_KEY not in text and "[REDACTED:aws-access-key-id]" in text


def test_a_clean_answer_is_not_rewritten(store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    assert rendered(engine.handle(post_agent("3 files changed, commit 1a2b3c4"))) == {}


def test_a_credential_cut_across_answers_is_withheld_from_the_second(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    assert rendered(engine.handle(post_agent(f"part one {AWS_KEY[:10]}", tool_use_id="t1"))) == {}
    out = rendered(engine.handle(post_agent(f"part two {AWS_KEY[10:]}", tool_use_id="t2")))
    assert out["hookSpecificOutput"]["updatedToolOutput"]["content"][0]["text"] == WITHHELD
    # Another session's pieces are not joined to it.
    other = post_agent(f"part two {AWS_KEY[10:]}", tool_use_id="t3", session="other")
    assert rendered(make_engine(store, tmp_path).handle(other)) == {}


def test_halves_scanned_at_the_same_time_are_joined(store: SqliteStore,
                                                    tmp_path: Path) -> None:
    import threading

    engine = make_engine(store, tmp_path)
    halves = [post_agent(f"part {AWS_KEY[:10]}", tool_use_id="t1"),
              post_agent(f"part {AWS_KEY[10:]}", tool_use_id="t2")]
    outs: list[dict[str, Any]] = []
    start = threading.Barrier(2)

    def run(payload: dict[str, Any]) -> None:
        start.wait()
        outs.append(rendered(engine.handle(payload)))

    threads = [threading.Thread(target=run, args=(h,)) for h in halves]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(bool(o) for o in outs) == [False, True]


def test_a_withheld_answer_does_not_taint_the_next_clean_one(store: SqliteStore,
                                                              tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    assert rendered(engine.handle(post_agent(f"key {AWS_KEY}", tool_use_id="t1")))
    assert rendered(engine.handle(post_agent("all done, 3 files", tool_use_id="t2"))) == {}


def test_a_task_notification_with_a_credential_is_blocked_and_audited(
        store: SqliteStore, tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    out = rendered(engine.handle(notification(f"the key is {AWS_KEY}")))
    assert out["decision"] == "block"
    assert out["hookSpecificOutput"] == {"hookEventName": "UserPromptSubmit",
                                         "suppressOriginalPrompt": True}
    assert AWS_KEY not in json.dumps(out)
    [row] = audit_rows(store, "agent.notification")
    assert row["decision"] == "block" and "output-secrets:aws-access-key-id" in row["flags"]


def test_clean_notifications_and_the_users_own_prompts_pass(store: SqliteStore,
                                                            tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    assert rendered(engine.handle(notification("all 3 files updated"))) == {}
    users = {"session_id": SESSION, "hook_event_name": "UserPromptSubmit",
             "prompt": f"use {AWS_KEY} to deploy"}
    assert rendered(engine.handle(users)) == {}


def test_warn_mode_notes_a_notification_without_blocking(store: SqliteStore,
                                                          tmp_path: Path) -> None:
    out = rendered(make_engine(store, tmp_path, output={"secrets": "warn"}).handle(
        notification(f"key {AWS_KEY}")))
    assert "decision" not in out and "warn mode" in out["systemMessage"]


# -- nothing raw on disk ----------------------------------------------------------------

@pytest.mark.parametrize("value", [AWS_KEY, f"general {AWS_KEY}", AWS_KEY + PRAGMA])
def test_the_audit_keeps_no_short_credential(value: str) -> None:
    clean = sanitize({"agent_type": value, "nested": {"list": [value]}})
    assert AWS_KEY not in json.dumps(clean)
    assert clean["agent_type"]["redacted"] == ["aws-access-key-id"]


def test_a_credential_in_subagent_type_reaches_no_table(store: SqliteStore,
                                                        tmp_path: Path) -> None:
    engine = make_engine(store, tmp_path)
    engine.handle(pre_agent(subagent_type=f"general {AWS_KEY}"))
    engine.handle(post_agent(subagent_type=f"general {AWS_KEY}"))
    engine.handle({**subagent_event("SubagentStart", "a9"), "agent_type": AWS_KEY})
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert AWS_KEY.encode() not in on_disk


def test_crash_logs_keep_no_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                       ) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path))
    try:
        raise ValueError(f"could not parse {AWS_KEY}{PRAGMA}")
    except ValueError as exc:
        where = _log_crash(exc)
    text = Path(where).read_text()
    assert "ValueError" in text and AWS_KEY not in text


def test_disguise_scan_leaves_ordinary_output_alone() -> None:
    text = ("Refactored `PolicyEngine._decide` (commit 3f2a9c1, PR #1234). Tests: 212 passed "
            "in 14.3s. See docs/policy.md and README_v2.md; SHA256 e3b0c44298fc1c149afbf4c8996f"
            "b92427ae41e4649b934ca495991b7852b855. UUID 123e4567-e89b-12d3-a456-426614174000."
            ) * 20
    assert scan_disguised(text) == []
    memory = FragmentMemory()
    memory.remember(SESSION, text)
    assert scan_disguised(text, earlier=memory.earlier(SESSION)) == []


@pytest.mark.parametrize("field", ["session_id", "tool_use_id", "agent_id"])
def test_policy_check_called_with_a_credential_for_an_id_writes_nothing(
        store: SqliteStore, tmp_path: Path, field: str) -> None:
    """policy_check is an MCP tool: a model can call it with any ids, which are store keys."""
    from smart_orchestrator.policy import EngineFactory

    factory = EngineFactory(store, source="server", project_dir=tmp_path)
    for payload in (pre_agent(), subagent_event("SubagentStart", "a1"),
                    post_agent(f"key {AWS_KEY}")):
        out = rendered(factory.decide({**payload, field: f"x{AWS_KEY}"}))
        if payload["hook_event_name"] == "PreToolUse":
            assert out["hookSpecificOutput"]["permissionDecision"] == "deny"
        else:
            assert out == {}
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("state.db*"))
    assert AWS_KEY.encode() not in on_disk


def test_an_output_too_large_to_scan_in_time_is_withheld(store: SqliteStore,
                                                          tmp_path: Path) -> None:
    from smart_orchestrator.policy.outputs import MAX_SCANNED_CHARS

    out = rendered(make_engine(store, tmp_path).handle(post_agent("a" * (MAX_SCANNED_CHARS + 1))))
    assert out["hookSpecificOutput"]["updatedToolOutput"]["content"][0]["text"] == WITHHELD


def test_decoys_do_not_hide_an_encoded_credential() -> None:
    decoys = " ".join(base64.b64encode(f"decoy {n:05d} padding".encode()).decode()
                      for n in range(3000))
    hidden = f"{decoys} {base64.b64encode(AWS_KEY.encode()).decode()}"
    assert [d.rule_id for d in scan_disguised(hidden)] == ["base64:aws-access-key-id"]
