"""The per-user service and the per-session shim that relays to it."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mcp_server.service_wire import plugin_stamp, service_lock, socket_path
from mcp_server.shim import Shim
from mcp_server.snapshot import SNAPSHOT, live_snapshot

from ..conftest import REPO_ROOT

ENVELOPE = {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {}}
AWS_KEY = "AKIAZ3MSJV4WKQ7NTB5R"


def _hook_call(msg_id: int, *, session: str, tool: str = "Agent", prompt: str = "SUB: list files",
               agent_id: str = "") -> dict[str, Any]:
    tool_input = ({"description": "list", "prompt": prompt, "subagent_type": "general-purpose",
                   "run_in_background": False} if tool == "Agent" else {"command": "ls"})
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {
        "name": "policy_check", "_meta": ENVELOPE,
        "arguments": {"event": "PreToolUse", "session_id": session, "tool_name": tool,
                      "tool_use_id": f"toolu_{msg_id}", "tool_input": json.dumps(tool_input),
                      "agent_id": agent_id}}}


def _decision(answer: dict[str, Any]) -> str | None:
    text = answer["result"]["content"][0]["text"]
    return json.loads(text).get("hookSpecificOutput", {}).get("permissionDecision")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def _service_env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAUDE")}
    env.update(SMART_ORCHESTRATOR_DATA=str(data), SMART_ORCHESTRATOR_SERVICE_IDLE_S="2",
               PYTHONPATH=str(REPO_ROOT))
    env.pop("SMART_ORCHESTRATOR_DB", None)
    return env


@pytest.fixture
def service(data: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "smart_orchestrator.cli", "service"],
                            env=_service_env(data), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (data / "service.json").exists():  # written once it listens
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield proc
    proc.kill()
    proc.wait(30)


class _Client:
    def __init__(self, data: Path, session: str, project: Path,
                 stamp: str | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(str(socket_path(data)))
        self.reader = self.sock.makefile("rb")
        self.send({"session_id": session, "project_dir": str(project),
                   "claude_pid": os.getpid(), "stamp": stamp or plugin_stamp()})
        self.hello = json.loads(self.reader.readline())

    def send(self, msg: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def answer(self, msg_id: int) -> dict[str, Any]:
        while True:
            msg = json.loads(self.reader.readline())
            if msg.get("id") == msg_id:
                return dict(msg)


def test_one_service_decides_for_several_sessions_each_in_its_own_project(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path) -> None:
    strict, relaxed = tmp_path / "strict", tmp_path / "relaxed"
    for project in (strict, relaxed):
        (project / ".claude").mkdir(parents=True)
    (strict / ".claude/smart-orchestrator.toml").write_text("[prompt]\nmax_chars = 10\n")
    a = _Client(data, "alpha-session", strict)
    b = _Client(data, "bravo-session", relaxed)
    assert a.hello["ok"] and a.hello["pid"] == service.pid == b.hello["pid"]
    a.send(_hook_call(1, session="alpha-session"))
    b.send(_hook_call(1, session="bravo-session"))
    assert _decision(a.answer(1)) == "deny", "the strict project's policy applies to a"
    assert _decision(b.answer(1)) is None, "and not to b"
    b.send(_hook_call(2, session="bravo-session", prompt=f"deploy with {AWS_KEY}"))
    assert _decision(b.answer(2)) == "deny"
    status = json.loads(subprocess.run(
        [sys.executable, "-m", "smart_orchestrator.cli", "status", "--json"],
        env=_service_env(data), capture_output=True, text=True, timeout=60,
        check=True).stdout)
    assert status["service"]["up"] and status["service"]["pid"] == service.pid
    assert {s["session"] for s in status["servers"]} == {"alpha-se", "bravo-se"}


def test_a_subagent_start_is_answered_at_once_and_recorded_before_the_next_call(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path) -> None:
    client = _Client(data, "start-session", tmp_path)
    client.send({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "policy_check", "_meta": ENVELOPE, "arguments": {
            "event": "SubagentStart", "session_id": "start-session", "agent_id": "agent-7",
            "agent_type": "general-purpose"}}})
    client.send(_hook_call(2, session="start-session", tool="Bash", agent_id="agent-7"))
    assert json.loads(client.answer(1)["result"]["content"][0]["text"]) == {}
    assert _decision(client.answer(2)) is None
    # The model's own messages still reach the SDK, which loads after the service listens.
    client.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {
        "_meta": ENVELOPE}})
    assert "policy_check" in {t["name"] for t in client.answer(3)["result"]["tools"]}
    conn = sqlite3.connect(f"file:{data / 'state.db'}?mode=ro", uri=True)
    try:
        kinds = [k for (k,) in conn.execute(
            "SELECT kind FROM audit WHERE kind IN ('agent.start', 'tool.use') ORDER BY seq")]
    finally:
        conn.close()
    assert kinds == ["agent.start", "tool.use"]


def test_only_the_owner_can_reach_the_service(service: subprocess.Popen[bytes],
                                              data: Path) -> None:
    path = socket_path(data)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_shim_of_another_plugin_version_makes_the_service_restart(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path) -> None:
    old = _Client(data, "s", tmp_path, stamp="0.0.1:/somewhere/else")
    assert old.hello == {"ok": False, "restart": True, "reason": "plugin version changed"}
    assert service.wait(60) == 0, "it exits so that the new version's service can start"
    assert not socket_path(data).exists()


def test_the_snapshot_the_shim_serves_matches_the_server(tmp_path: Path) -> None:
    assert json.loads(SNAPSHOT.read_text()) == live_snapshot(tmp_path), \
        "regenerate it: .venv/bin/python -m mcp_server.snapshot"


def test_the_service_decides_hooks_without_importing_the_mcp_sdk() -> None:
    """A cold start waits for what the policy pin and the first hook call need; the SDK
    (about two seconds to import) loads after the service listens."""
    code = ("import sys, mcp_server.service; "
            "print(sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', "
            "'mcp_types', 'pydantic'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_hook_results_carry_the_server_info_the_sdk_stamps() -> None:
    from mcp_server.hook_call import SERVER_INFO
    from mcp_server.server import build_server

    assert build_server()._lowlevel_server.server_info_stamp == SERVER_INFO


# -- the shim ------------------------------------------------------------------------------

class _Pipe(io.RawIOBase):
    """stdin for the shim: lines pushed by the test, EOF on close."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._buf = b""
        self._closed = False

    def push(self, msg: dict[str, Any]) -> None:
        with self._cond:
            self._buf += json.dumps(msg).encode() + b"\n"
            self._cond.notify_all()

    def close_input(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        with self._cond:
            while not self._buf and not self._closed:
                self._cond.wait()
            n = min(len(b), len(self._buf))
            b[:n], self._buf = self._buf[:n], self._buf[n:]
            return n


class _Out(io.RawIOBase):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.messages: list[dict[str, Any]] = []
        self._partial = b""

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        with self._cond:
            self._partial += bytes(b)
            *lines, self._partial = self._partial.split(b"\n")
            self.messages += [json.loads(line) for line in lines if line.strip()]
            self._cond.notify_all()
        return len(b)

    def answer(self, msg_id: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages:
                    if m.get("id") == msg_id and "method" not in m:
                        return m
                left = deadline - time.monotonic()
                assert left > 0, f"no answer for {msg_id}: {self.messages}"
                self._cond.wait(left)


def _start_shim(data: Path, tmp_path: Path, hold_s: float) -> tuple[_Pipe, _Out, threading.Thread]:
    stdin, stdout = _Pipe(), _Out()
    env = _service_env(data)
    env.update(CLAUDE_CODE_SESSION_ID="shim-session", CLAUDE_PROJECT_DIR=str(tmp_path))
    shim = Shim(data, stdin=io.BufferedReader(stdin), stdout=stdout, env=env,  # type: ignore[arg-type]
                hold_s=hold_s)
    thread = threading.Thread(target=shim.run, daemon=True)
    thread.start()
    return stdin, stdout, thread


def test_without_the_service_the_shim_answers_and_fails_closed_then_relays_once_it_is_up(
        data: Path, tmp_path: Path) -> None:
    # Someone holds the service lock (a service starting, say): the shim waits for it and
    # does not start another.
    lock = service_lock(data).open("a+")
    fcntl.flock(lock, fcntl.LOCK_EX)
    stdin, stdout, thread = _start_shim(data, tmp_path, hold_s=0.5)
    try:
        stdin.push({"jsonrpc": "2.0", "id": 1, "method": "server/discover",
                    "params": {"_meta": ENVELOPE}})
        assert stdout.answer(1)["result"]["_meta"]["io.modelcontextprotocol/serverInfo"][
            "name"] == "orchestrator"
        stdin.push({"jsonrpc": "2.0", "id": 2, "method": "tools/list",
                    "params": {"_meta": ENVELOPE}})
        names = {t["name"] for t in stdout.answer(2)["result"]["tools"]}
        assert {"policy_check", "spawn_wave", "gate_status"} <= names
        stdin.push(_hook_call(3, session="shim-session"))
        denied = json.loads(stdout.answer(3)["result"]["content"][0]["text"])
        assert denied["hookSpecificOutput"]["permissionDecision"] == "deny"
        assert "service is not running" in denied["hookSpecificOutput"][
            "permissionDecisionReason"]
        stdin.push(_hook_call(4, session="shim-session", tool="Bash", agent_id="sub-1"))
        assert _decision(stdout.answer(4)) == "deny", "a subagent's tools are guarded too"
        stdin.push(_hook_call(5, session="shim-session", tool="Bash"))
        passed = json.loads(stdout.answer(5)["result"]["content"][0]["text"])
        # The main agent's own tools pass; a Bash line runs with the data folder hidden
        # where bubblewrap works, through the user's own permission rules.
        assert "permissionDecision" not in passed.get("hookSpecificOutput", {}), \
            "the main agent's own tools pass"
        # The lock is released: the shim starts the service and relays to it.
        lock.close()
        stdin.push(_hook_call(6, session="shim-session"))
        # Held until the service answers, or denied after the hold: retry until relayed.
        deadline = time.monotonic() + 120
        msg_id = 6
        while _reason(stdout.answer(msg_id)).startswith("Smart Orchestrator cannot check"):
            assert time.monotonic() < deadline, "the shim never reached the service"
            msg_id += 1
            stdin.push(_hook_call(msg_id, session="shim-session"))
        assert _decision(stdout.answer(msg_id)) is None, "allowed by the real policy"
    finally:
        stdin.close_input()
        thread.join(30)
        _stop_service(data)


def test_hook_calls_pending_when_the_service_dies_go_to_the_next_service(
        data: Path, tmp_path: Path) -> None:
    (tmp_path / ".claude").mkdir()
    # The only slot is held, with a wait, so the service is mid-decision when it is killed.
    (tmp_path / ".claude/smart-orchestrator.toml").write_text(
        "[admission]\nmax_in_flight_session = 1\nwait_timeout_s = 60\n")
    stdin, stdout, thread = _start_shim(data, tmp_path, hold_s=120)
    try:
        stdin.push(_hook_call(1, session="shim-session"))
        assert _decision(stdout.answer(1)) is None
        stdin.push(_hook_call(2, session="shim-session"))  # waits for the slot
        pid = json.loads((data / "service.json").read_text())["pid"]
        _wait_for_claim(data)
        os.kill(pid, 9)
        # The new service finds the claim the dead one left undecided: refused, so the
        # action is blocked, with the reason (not a bare "hook error").
        refused = stdout.answer(2)
        assert _decision(refused) == "deny" and "left no decision" in _reason(refused), refused
        # The first agent ends; a new service records it and admits the next call.
        stdin.push(_post_call(3, "toolu_1"))
        assert json.loads(stdout.answer(3)["result"]["content"][0]["text"]) == {}
        stdin.push(_hook_call(4, session="shim-session"))
        assert _decision(stdout.answer(4)) is None, _reason(stdout.answer(4))
        assert json.loads((data / "service.json").read_text())["pid"] != pid
    finally:
        stdin.close_input()
        thread.join(30)
        _stop_service(data)


def test_a_hook_call_the_dead_service_never_took_is_decided_by_the_next(
        data: Path, tmp_path: Path) -> None:
    # A stand-in service that reads the call and dies before deciding it (the shape of a
    # SIGKILL between the socket's buffer and the decision): the shim sends the call to the
    # service it starts next, which decides it, where it used to fail it ("hook error").
    path = socket_path(data)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    lock = service_lock(data).open("a+")
    fcntl.flock(lock, fcntl.LOCK_EX)  # as a live service holds it: the shim starts none
    took = threading.Event()

    def die_holding_the_call() -> None:
        conn, _ = listener.accept()
        reader = conn.makefile("rb")
        reader.readline()  # the preamble
        conn.sendall(b'{"ok": true, "pid": 1, "since": 0}\n')
        reader.readline()  # the hook call, never answered
        took.set()
        listener.close()
        path.unlink()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
        conn.close()

    fake = threading.Thread(target=die_holding_the_call, daemon=True)
    fake.start()
    stdin, stdout, thread = _start_shim(data, tmp_path, hold_s=120)
    try:
        stdin.push(_hook_call(1, session="shim-session"))
        assert took.wait(60), "the shim never sent the call"
        answer = stdout.answer(1)
        assert _decision(answer) is None, answer  # decided, and allowed
        assert (data / "service.json").exists()
    finally:
        stdin.close_input()
        thread.join(30)
        fake.join(30)
        _stop_service(data)


def _wait_for_claim(data: Path) -> None:
    import sqlite3

    deadline = time.monotonic() + 60
    while True:
        try:
            conn = sqlite3.connect(f"file:{data / 'state.db'}?mode=ro", uri=True, timeout=1)
            try:
                # Claim keys are digests: the only undecided PreToolUse is the one waiting.
                if conn.execute("SELECT 1 FROM claims WHERE key LIKE 'PreToolUse:%' AND "
                                "decision IS NULL").fetchone():
                    return
            finally:
                conn.close()
        except sqlite3.Error:
            pass
        assert time.monotonic() < deadline, "the service never took the call"
        time.sleep(0.02)


def _post_call(msg_id: int, tool_use_id: str) -> dict[str, Any]:
    response = {"status": "completed", "agentId": "a1", "agentType": "general-purpose",
                "content": [{"type": "text", "text": "done"}]}
    return {"jsonrpc": "2.0", "id": msg_id, "method": "tools/call", "params": {
        "name": "policy_check", "_meta": ENVELOPE,
        "arguments": {"event": "PostToolUse", "session_id": "shim-session", "tool_name": "Agent",
                      "tool_use_id": tool_use_id, "tool_response": json.dumps(response),
                      "tool_input": json.dumps({"description": "list", "prompt": "SUB",
                                                "subagent_type": "general-purpose"})}}}


def _reason(answer: dict[str, Any]) -> str:
    text = answer["result"]["content"][0]["text"]
    return str(json.loads(text).get("hookSpecificOutput", {}).get("permissionDecisionReason", ""))


def _stop_service(data: Path) -> None:
    marker = data / "service.json"
    if marker.exists():
        with contextlib.suppress(OSError, ValueError, KeyError):
            os.kill(json.loads(marker.read_text())["pid"], 9)


def test_a_polite_stop_removes_the_socket_and_the_marker(service: subprocess.Popen[bytes],
                                                         data: Path) -> None:
    assert (data / "service.json").exists()
    service.terminate()
    assert service.wait(60) == 0
    assert not socket_path(data).exists() and not (data / "service.json").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_another_local_user_cannot_connect(service: subprocess.Popen[bytes], data: Path) -> None:
    path = socket_path(data)
    pid = os.fork()
    if pid == 0:  # the other user
        code = 1
        try:
            os.setgid(65534)
            os.setuid(65534)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
            except PermissionError:
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "another user reached the socket"


def test_a_socket_folder_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    from mcp_server.service_wire import private_dir_ok

    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o777)
    os.chmod(open_dir, 0o777)
    assert "open to other users" in (private_dir_ok(open_dir) or "")
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    assert private_dir_ok(mine) is None
    if os.getuid() == 0:
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        assert "another user" in (private_dir_ok(theirs) or "")


def test_a_data_folder_too_deep_for_a_unix_socket_gets_a_private_short_one(
        tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = socket_path(deep)
    assert len(os.fsencode(path)) <= 107
    assert path.parent.name == f"smart-orchestrator-{os.getuid()}"
    assert socket_path(deep) == path and socket_path(tmp_path / "other" / ("e" * 100)) != path


# -- hook calls answered without the SDK's request machinery -----------------------------

def test_a_hook_call_is_answered_as_the_sdk_answers_it(service: subprocess.Popen[bytes],
                                                       data: Path, tmp_path: Path) -> None:
    client = _Client(data, "edge-session", tmp_path)
    client.send(_hook_call(1, session="edge-session", prompt=f"deploy with {AWS_KEY}"))
    direct = client.answer(1)
    # Another tool through the SDK, for the result's shape.
    client.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "gate_status", "_meta": ENVELOPE, "arguments": {}}})
    through_sdk = client.answer(2)
    assert _decision(direct) == "deny"
    assert set(direct["result"]) == set(through_sdk["result"]) | {"isError"} or \
        set(direct["result"]) == set(through_sdk["result"])
    assert direct["result"]["isError"] is False and direct["result"]["resultType"] == "complete"
    assert direct["result"]["_meta"] == through_sdk["result"]["_meta"]


@pytest.mark.parametrize("meta", [
    {**ENVELOPE, "claudecode/toolUseId": "toolu_model"},  # the model calling the tool
])
def test_a_model_cannot_call_policy_check_on_either_path(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path,
        meta: dict[str, Any]) -> None:
    client = _Client(data, "model-session", tmp_path)
    call = _hook_call(1, session="model-session")
    call["params"]["_meta"] = meta
    call["params"]["arguments"]["event"] = "SessionEnd"
    client.send(call)
    answer = client.answer(1)
    assert answer["result"]["isError"] is True
    assert "cannot be called as a tool" in answer["result"]["content"][0]["text"]


@pytest.mark.parametrize("arguments", [
    {"event": "PreToolUse", "tool_name": ["Agent"], "tool_input": "{}"},
    {"event": "PreToolUse", "tool_name": "Agent", "tool_input": {"prompt": "x"}},
    {"event": ["SessionEnd"], "tool_name": "Agent", "tool_input": "{}"},
    {"event": "PreToolUse", "tool_name": "Bash", "agent_id": 7, "tool_input": "{}"},
])
def test_a_malformed_hook_call_is_denied_in_one_line(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path,
        arguments: dict[str, Any]) -> None:
    client = _Client(data, "bad-session", tmp_path)
    call = _hook_call(1, session="bad-session")
    call["params"]["arguments"] = {"session_id": "bad-session", **arguments}
    client.send(call)
    answer = client.answer(1)
    assert _decision(answer) == "deny"
    assert "malformed hook input" in _reason(answer) and "\n" not in _reason(answer)


def test_a_hook_call_naming_another_session_is_refused(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path) -> None:
    client = _Client(data, "mine", tmp_path)
    client.send(_hook_call(1, session="someone-else"))
    answer = client.answer(1)
    assert answer["result"]["isError"] is True
    assert "another session" in answer["result"]["content"][0]["text"]


def test_parallel_hook_calls_of_one_connection_are_all_answered(
        service: subprocess.Popen[bytes], data: Path, tmp_path: Path) -> None:
    (tmp_path / ".claude").mkdir()
    (tmp_path / ".claude/smart-orchestrator.toml").write_text(
        "[admission]\nmax_in_flight_session = 16\nmax_in_flight_machine = 16\n"
        "spawns_per_minute = 100\nwait_timeout_s = 0\n")
    client = _Client(data, "burst-session", tmp_path)
    for n in range(1, 13):
        client.send(_hook_call(n, session="burst-session"))
    answers = {}
    while len(answers) < 12:  # in any order: each is decided on its own
        msg = json.loads(client.reader.readline())
        answers[msg["id"]] = msg
    assert sorted(answers) == list(range(1, 13))
    assert {_decision(a) for a in answers.values()} == {None}, \
        [_reason(a) for a in answers.values() if _reason(a)]


def test_every_hook_passes_exactly_the_fields_its_event_is_read_with() -> None:
    """hooks/hooks.json and the typed hook arguments (`HookArgs`) say the same: a field a
    check reads but the hook does not pass would silently read as empty."""
    from mcp_server.hook_call import EVENT_ARGS

    hooks = json.loads((REPO_ROOT / "hooks" / "hooks.json").read_text())["hooks"]
    seen: dict[str, set[str]] = {}
    for event, groups in hooks.items():
        for group in groups:
            for hook in group["hooks"]:
                if hook["type"] != "mcp_tool":
                    continue
                assert hook["input"]["event"] == "${hook_event_name}"
                assert all(v == f"${{{k}}}" for k, v in hook["input"].items() if k != "event")
                seen.setdefault(event, set()).update(hook["input"])
    assert seen == {e: set(f) for e, f in EVENT_ARGS.items()}
