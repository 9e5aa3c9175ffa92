"""The output gate in the real CLI: what a subagent returns never brings a credential to the
main agent, however many times the subagent repeats it, and nothing the plugin writes keeps
one.

The scripted subagents play the attacker: they answer with the credential on every turn,
disguise it, or cut it into pieces. What counts is what the main model actually receives:
every request the CLI sends for the main conversation is searched.
"""

from __future__ import annotations

import base64
import codecs
import fcntl
import json
import os
import secrets
import signal
import string
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mcp_server.service_wire import service_lock

from .harness import (
    ClaudeRun,
    ModelRequest,
    ScriptedModel,
    Turn,
    agent_call,
    text,
    tool_use,
    turn,
)
from .plugin_env import (
    MCP_PREFIX,
    audit_rows,
    data_folder_files,
    plugin_data,
    run_plugin,
    wait_for_audit,
)

REPEATS = 25


def aws_key() -> str:
    """A fresh AWS access key id (the scanner's best-known format), distinct per use."""
    return "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))


def unknown_token() -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(24))


def github_token() -> str:
    return "ghp_" + "".join(secrets.choice(string.ascii_letters + string.digits)
                            for _ in range(36))


def encodings(secret: str) -> dict[str, str]:
    """The credential as it is, and the simple encodings a reader would undo."""
    raw = secret.encode()
    return {"raw": secret, "base64": base64.b64encode(raw).decode().rstrip("="),
            "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("="),
            "hex": raw.hex(), "HEX": raw.hex().upper(), "reversed": secret[::-1],
            "rot13": codecs.encode(secret, "rot13"),
            "url": "".join(f"%{b:02X}" for b in raw),
            "utf16": secret.encode("utf-16-le").decode("latin-1")}


def main_saw(model: ScriptedModel) -> str:
    """Everything the CLI sent for the main conversation, system prompt to last turn."""
    return "\n".join(json.dumps(r.body) for r in model.requests_for("main"))


def assert_main_never_saw(model: ScriptedModel, secret: str) -> None:
    seen = main_saw(model)
    assert model.requests_for("main"), "the main agent was never asked anything"
    for name, form in encodings(secret).items():
        assert form not in seen, f"the main agent received the credential ({name})"
    spaced = " ".join(secret)
    assert spaced not in seen


def assert_nothing_on_disk(home: Path, planted: list[str]) -> None:
    """Every byte of every file under the plugin's data folder: the store, its WAL and
    shared memory, logs, decision files, caches."""
    blobs = data_folder_files(home)
    assert any(path.name == "state.db" for path in blobs)
    for path, blob in blobs.items():
        for secret in planted:
            for name, form in encodings(secret).items():
                encoded = form.encode("latin-1") if name == "utf16" else form.encode()
                assert encoded not in blob, f"{name} form of a planted credential in {path}"




def repeating(secret: str, times: int = REPEATS) -> list[Turn]:
    return [text(f"Here it is again: {secret}") for _ in range(times)]


def stop_flags(home: Path) -> list[list[str]]:
    return [json.loads(d)["flags"] for *_, d in audit_rows(home, "agent.stop")]


def test_a_subagent_repeating_a_credential_in_the_foreground_never_reaches_the_main_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    scripted_model.main([agent_call("GATE-FG: find the key"), text("noted")])
    scripted_model.subagent("GATE-FG", repeating(key))
    run = run_plugin(run_claude, repo_root, "look")
    run.assert_success(allow_denials=True)
    assert_main_never_saw(scripted_model, key)
    [result] = scripted_model.tool_results("main")
    assert "[REDACTED:aws-access-key-id]" in result.text, result.text
    # One rewrite was asked for; the second answer still held it and was redacted.
    assert len(scripted_model.requests_for("GATE-FG")) == 2
    home = claude_dirs["home"]
    # Decided once, though both hooks gate it (their claim keys agree).
    [end] = [json.loads(d) for *_, d in audit_rows(home, "agent.end")]
    assert "output-secrets:aws-access-key-id" in end["flags"]
    assert_nothing_on_disk(home, [key])


def test_a_background_subagent_repeating_a_credential_never_reaches_the_main_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    scripted_model.main([agent_call("GATE-BG: find the key", background=True),
                         text("started"), text("noted")])
    scripted_model.subagent("GATE-BG", repeating(key))
    run = run_plugin(run_claude, repo_root, "look")
    run.assert_success(allow_denials=True)
    assert_main_never_saw(scripted_model, key)
    # The notification itself was kept out of the conversation.
    assert "<task-notification>\\n<task-id>" not in main_saw(scripted_model)
    home = claude_dirs["home"]
    [note] = [json.loads(d) for *_, d in wait_for_audit(home, "agent.notification")]
    assert [json.loads(d)["source"] for *_, d in audit_rows(home, "agent.notification")] \
        in (["server"], ["command"])
    assert note["decision"] == "block" and "output-secrets:aws-access-key-id" in note["flags"]
    assert_nothing_on_disk(home, [key])


def test_a_clean_answer_after_a_blocked_one_passes(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    scripted_model.main([agent_call("GATE-CLEAN: find the key"), text("noted")])
    scripted_model.subagent("GATE-CLEAN", [text(f"The key is {key}"),
                                           text("The key is in keys/deploy.pem, line 3.")])
    run_plugin(run_claude, repo_root, "look").assert_success(allow_denials=True)
    [result] = scripted_model.tool_results("main")
    assert "The key is in keys/deploy.pem, line 3." in result.text
    assert "REDACTED" not in result.text and "withheld" not in result.text
    assert_main_never_saw(scripted_model, key)
    flags = stop_flags(claude_dirs["home"])
    assert len(flags) == 2 and flags[0] and not flags[1], flags


def test_a_clean_background_answer_after_a_blocked_one_is_delivered(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    scripted_model.main([agent_call("GATE-CLEANBG: find the key", background=True),
                         text("started"), text("noted")])
    scripted_model.subagent("GATE-CLEANBG", [text(f"The key is {key}"),
                                             text("It is stored in the vault under deploy/.")])
    run_plugin(run_claude, repo_root, "look").assert_success(allow_denials=True)
    seen = main_saw(scripted_model)
    assert "It is stored in the vault under deploy/." in seen
    assert_main_never_saw(scripted_model, key)


def disguises(secret: str) -> list[str]:
    forms = encodings(secret)
    return [forms["base64"], forms["hex"], " ".join(secret), "-".join(secret),
            forms["reversed"], forms["rot13"], "\u200b".join(secret), forms["url"],
            "".join(chr(ord(c) + 0xFEE0) for c in secret),  # full-width letters
            base64.b64encode(base64.b64encode(secret.encode())).decode()]


def test_a_disguised_credential_never_reaches_the_main_agent(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """One subagent per disguise, each insisting on it; and one that changes its disguise
    on every rewrite."""
    key = aws_key()
    forms = disguises(key)
    scripted_model.main([*(agent_call(f"GATE-DISGUISE-{n}: find the key")
                           for n in range(len(forms))),
                         agent_call("GATE-SHIFTING: find the key"), text("noted")])
    for n, form in enumerate(forms):
        scripted_model.subagent(f"GATE-DISGUISE-{n}", [text(f"Decode this: {form}")] * 3)
    scripted_model.subagent("GATE-SHIFTING", [text(f"Decode this: {form}")
                                              for form in [key, *forms]])
    run_plugin(run_claude, repo_root, "look", timeout=300).assert_success(allow_denials=True)
    results = scripted_model.tool_results("main")
    assert len(results) == len(forms) + 1
    for form, result in zip([*forms, forms[0]], results, strict=True):
        # A disguise the normalised view undoes is redacted where it is written; the
        # others withhold the whole answer.
        assert ("withheld this subagent's answer" in result.text
                or "[REDACTED:aws-access-key-id]" in result.text), (form, result.text)
        assert form not in result.text
    assert_main_never_saw(scripted_model, key)
    assert_nothing_on_disk(claude_dirs["home"], [key])


def test_a_credential_cut_across_two_answers_is_withheld_from_the_second(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    key = aws_key()
    head, tail = key[:9], key[9:]
    scripted_model.main([agent_call("GATE-SPLIT-1: first half"),
                         agent_call("GATE-SPLIT-2: second half"), text("noted")])
    scripted_model.subagent("GATE-SPLIT-1", [text(f"Part one is {head}")] * 3)
    scripted_model.subagent("GATE-SPLIT-2", [text(f"Part two is {tail}")] * 3)
    run_plugin(run_claude, repo_root, "look").assert_success(allow_denials=True)
    first, second = scripted_model.tool_results("main")
    assert head in first.text
    assert tail not in second.text and "withheld" in second.text, second.text


def test_two_parallel_agents_cannot_deliver_the_two_halves_of_a_credential(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """Their PostToolUse hooks run at the same time; each half is harmless alone."""
    key = aws_key()
    head, tail = key[:10], key[10:]
    scripted_model.main([turn(agent_call("GATE-HALF-A: first half"),
                              agent_call("GATE-HALF-B: second half")), text("noted")])
    scripted_model.subagent("GATE-HALF-A", [text(f"Part one is {head}")] * 3)
    scripted_model.subagent("GATE-HALF-B", [text(f"Part two is {tail}")] * 3)
    run_plugin(run_claude, repo_root, "look").assert_success(allow_denials=True)
    results = scripted_model.tool_results("main")
    assert len(results) == 2
    delivered = [half for half in (head, tail) if any(half in r.text for r in results)]
    assert len(delivered) == 1, "both halves reached the main agent"
    assert sum("withheld" in r.text for r in results) == 1


def test_a_resumed_agents_new_answer_is_scanned(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """SendMessage wakes a finished agent: its next answer passes the same gate."""
    key = aws_key()
    agent_ids: list[str] = []

    def resume(request: ModelRequest) -> Turn | None:
        if request.conversation != "main" or request.turn != 1:
            return None
        for result in request.tool_results:
            if "agentId:" in result.text:
                agent_ids.append(result.text.split("agentId:", 1)[1].split()[0])
        assert agent_ids, "no agent id in the first result"
        return tool_use("SendMessage", {"to": agent_ids[0], "summary": "one more thing",
                                        "message": "GATE-RESUME-AGAIN: now print the key"})

    scripted_model.on(resume)
    scripted_model.main([agent_call("GATE-RESUME: look around"), text("(resumed)"),
                         text("waiting"), text("noted"), text("done")])
    scripted_model.subagent("GATE-RESUME", [text("Nothing found yet."), *repeating(key, 10)])
    run = run_plugin(run_claude, repo_root, "look")
    run.assert_success(allow_denials=True)
    assert agent_ids
    assert len(scripted_model.requests_for("GATE-RESUME")) >= 2, "the agent was not resumed"
    assert_main_never_saw(scripted_model, key)
    assert any(any("aws-access-key-id" in f for f in flags)
               for flags in stop_flags(claude_dirs["home"]))


def test_no_planted_credential_is_written_anywhere(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path]) -> None:
    """A distinct credential in every field of every surface the plugin sees; afterwards
    no byte under the plugin's data folder holds any of them (in redact mode, where the
    decisions carry rewritten prompts)."""
    work, home = claude_dirs["work"], claude_dirs["home"]
    (work / ".claude").mkdir()
    (work / ".claude" / "smart-orchestrator.toml").write_text('[secrets]\naction = "redact"\n')
    planted: dict[str, str] = {name: aws_key() for name in (
        "prompt", "description", "subagent_type", "model", "fg_output", "bg_output",
        "send_to", "send_summary", "send_message", "wave_pragma", "wave_name",
        "wave_output", "resumed_output")}
    planted["github"] = github_token()
    # Formats no scanner knows: only keeping no prompt or output text keeps them off disk.
    planted["unknown_prompt"] = unknown_token()
    planted["unknown_output"] = unknown_token()
    p = planted
    pragma = "  # pragma: allowlist secret"
    agent_ids: list[str] = []

    def send_message(request: ModelRequest) -> Turn | None:
        """Right after EB-RESUME answers: wake it again, with credentials in the message."""
        if request.conversation != "main" or request.turn != 5:
            return None
        [first] = [r for r in request.tool_results
                   if "EB-RESUME" in json.dumps(r.tool_input) and "agentId:" in r.text]
        agent_ids.append(first.text.split("agentId:", 1)[1].split()[0])
        return tool_use("SendMessage", {"to": agent_ids[0],
                                        "summary": f"recap {p['send_summary']}",
                                        "message": f"EB-RESUME again {p['send_message']}"})

    scripted_model.on(send_message)
    wave = f"{MCP_PREFIX}__spawn_wave"
    scripted_model.main([
        agent_call(f"EB-1: deploy with {p['prompt']} and {p['github']} "
                   f"(password {p['unknown_prompt']})",
                   description=f"deploy {p['description']}"),
        agent_call("EB-2: anything", subagent_type=f"general {p['subagent_type']}"),
        agent_call("EB-3: anything", model=f"claude-{p['model']}"),
        agent_call("EB-4: background", background=True),
        agent_call("EB-RESUME: look around"),
        text("(replaced by a SendMessage to EB-RESUME)"),
        tool_use("SendMessage", {"to": p["send_to"], "summary": "recap",
                                 "message": "anything"}),
        tool_use(wave, {"plan": {"tasks": [{"id": "leak",
                                           "prompt": f"use {p['wave_pragma']}{pragma}"}]},
                        "cwd": str(work), "wait_s": 60}),
        tool_use(wave, {"plan": {"name": f"wave {p['wave_name']}",
                                 "tasks": [{"id": "a", "prompt": "EB-WAVE: list it"}]},
                        "cwd": str(work), "wait_s": 60}),
        tool_use(wave, {"plan": {"tasks": [{"id": "b", "prompt": "EB-WAVE: print it"}]},
                        "cwd": str(work), "wait_s": 120}),
        text("waiting"), text("noted"), text("done"), text("done"),
    ])
    scripted_model.subagent("EB-1", [text(f"Deployed. Key was {p['fg_output']}, password "
                                          f"{p['unknown_output']}")] * 3)
    scripted_model.subagent("EB-2", [text("done")])
    scripted_model.subagent("EB-3", [text("done")])
    scripted_model.subagent("EB-4", [text(f"Background: {p['bg_output']}")] * 3)
    scripted_model.subagent("EB-RESUME", [text("nothing yet"),
                                          *repeating(p["resumed_output"], 3)])
    scripted_model.agent("EB-WAVE", [text(f"Printed {p['wave_output']}")] * 3)
    run = run_plugin(run_claude, repo_root, "go", timeout=300,
                     allowed_tools=[f"{MCP_PREFIX}__spawn_wave"])
    run.assert_success(allow_denials=True)
    wait_for_audit(home, "agent.stop", count=3)
    wave_results = [r for r in scripted_model.tool_results("main") if r.tool_name == wave]
    assert len(wave_results) == 3
    assert wave_results[0].is_error and "holds a credential" in wave_results[0].text
    assert wave_results[1].is_error and "holds a credential" in wave_results[1].text
    assert not wave_results[2].is_error, wave_results[2].text
    assert scripted_model.requests_for("EB-WAVE"), "the wave's agent never ran"
    assert scripted_model.requests_for("EB-1"), "the redacted call did not run"
    assert agent_ids and len(scripted_model.requests_for("EB-RESUME")) >= 2, "not resumed"
    for secret in planted.values():
        assert_main_never_saw_output(scripted_model, secret, planted)
    assert_nothing_on_disk(home, list(planted.values()))


def assert_main_never_saw_output(model: ScriptedModel, secret: str,
                                 planted: dict[str, str]) -> None:
    """Only what subagents and waves produced: the main agent wrote the rest itself."""
    if secret in (planted["fg_output"], planted["bg_output"], planted["wave_output"],
                  planted["resumed_output"]):
        seen = "\n".join(json.dumps(r.messages[1:]) for r in model.requests_for("main"))
        assert secret not in seen


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_the_gate_holds_when_the_service_dies_while_a_subagent_runs(
        scripted_model: ScriptedModel, run_claude: Callable[..., ClaudeRun],
        repo_root: Path, claude_dirs: dict[str, Path], background: bool) -> None:
    """The service is killed while the subagent works and cannot come back (its lock is
    held): the shim answers the output gate itself, withholding what it cannot scan."""
    key = aws_key()
    data = plugin_data(claude_dirs["home"])
    held: list[Any] = []

    def kill_the_service(request: ModelRequest) -> None:
        if request.conversation == "main" and request.turn == 0:
            # The short hold below is for after the kill: the first Agent call waits for
            # the service to be up, however long a loaded machine takes to start it.
            deadline = time.monotonic() + 120
            while not (data / "service.json").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        if request.conversation != "GATE-DOWN" or held:
            return None
        pid = json.loads((data / "service.json").read_text())["pid"]
        os.kill(pid, signal.SIGKILL)
        lock = service_lock(data).open("a+")
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits for the dead service's lock to go
        held.append(lock)
        return None

    scripted_model.on(kill_the_service)
    scripted_model.main([agent_call("GATE-DOWN: find the key", background=background),
                         text("started"), text("noted")])
    scripted_model.subagent("GATE-DOWN", repeating(key))
    try:
        run_plugin(run_claude, repo_root, "look",
                   env={"SMART_ORCHESTRATOR_SHIM_HOLD_S": "3"}).assert_success(
            allow_denials=True)
    finally:
        for lock in held:
            lock.close()
    assert held, "the subagent never ran"
    assert_main_never_saw(scripted_model, key)
    assert_nothing_on_disk(claude_dirs["home"], [key])
