"""The `orchestrator` MCP server as Claude Code starts it: a relay to the per-user service.

Standard library only, so it starts in tens of milliseconds and works before the plugin's
environment exists. It connects to the service (`mcp_server/service.py`), starting it when
none runs, sends the session's preamble, then copies MCP messages both ways unchanged.

While the service is not there (the first session after install builds the environment;
the service was killed or is restarting), the shim answers what it can itself, so Claude
Code never marks the server failed: the protocol's discovery and listings (from
`tools.json`, a snapshot of the real server's answers), and hook decisions that fail
closed: an agent-starting call or a subagent's tool call is held until the service is up
and then decided by it, or denied with the reason after `HOLD_S`; the main agent's own tools
pass. Other tool calls wait for the service, with progress notifications, and fail with the
reason if it does not come.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from smart_orchestrator.locks import held
from smart_orchestrator.paths import data_dir
from smart_orchestrator.policy.decision import Decision, Verdict

from .hook_call import AGENT_TOOLS, fail_closed, guarded
from .hook_output import hook_output
from .service_wire import MAX_LINE, plugin_stamp, private_dir_ok, service_lock, socket_path

__all__ = ["Shim", "main"]

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "bin" / "smart-orchestrator"
SNAPSHOT = Path(__file__).with_name("tools.json")
HOLD_S = float(os.environ.get("SMART_ORCHESTRATOR_SHIM_HOLD_S") or 100.0)
TOOL_WAIT_S = 120.0
PROMPT_WAIT_S = 15.0
START_EVERY_S = 5.0
# The session's own variables must not leak into the service, which serves them all.
_SESSION_VARS = ("CLAUDE_CODE_SESSION_ID", "CLAUDE_PID", "CLAUDE_PROJECT_DIR",
                 "CLAUDE_CODE_ENTRYPOINT", "CLAUDECODE", "SMART_ORCHESTRATOR_POLICY")


def _jsonrpc_error(msg_id: Any, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": message}}


def _text_result(msg_id: Any, text: str, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}]}
    if error:
        result["isError"] = True
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}


class Shim:
    def __init__(self, data: Path, *, stdin: IO[bytes], stdout: IO[bytes],
                 env: dict[str, str] | None = None, hold_s: float = HOLD_S) -> None:
        self.data = data
        self.hold_s = hold_s
        self.stdin = stdin
        self.stdout = stdout
        self.env = dict(os.environ if env is None else env)
        self.stamp = plugin_stamp()
        self.preamble = {
            "session_id": self.env.get("CLAUDE_CODE_SESSION_ID", ""),
            "project_dir": self.env.get("CLAUDE_PROJECT_DIR") or os.getcwd(),
            "claude_pid": _int(self.env.get("CLAUDE_PID")) or os.getppid(),
            "policy_file": self.env.get("SMART_ORCHESTRATOR_POLICY") or None,
            "stamp": self.stamp}
        self._out_lock = threading.Lock()
        self._link_lock = threading.Lock()
        self._link: socket.socket | None = None
        # Calls sent to the service and not answered yet: id key -> (message, its line).
        self._pending: dict[str, tuple[dict[str, Any], bytes]] = {}
        self._connected = threading.Condition()
        self._closing = False
        self._last_start = -START_EVERY_S
        self._child: subprocess.Popen[bytes] | None = None
        self._problem = "the service is starting"
        self._snapshot: dict[str, Any] | None = None

    # -- main loop ---------------------------------------------------------------------
    def run(self) -> int:
        threading.Thread(target=self._connector, name="connector", daemon=True).start()
        for line in iter(lambda: self.stdin.readline(MAX_LINE), b""):
            if line.strip():
                self._from_client(line)
        self._closing = True
        with self._link_lock:
            if self._link is not None:
                with contextlib.suppress(OSError):
                    self._link.close()
        return 0

    def _from_client(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._forward(None, line)  # the service answers the parse error, or nobody
            return
        if msg.get("method") == "initialize":
            # Claude Code tries the old handshake after the modern discovery; answered
            # here as the modern server answers it, because a service connection whose
            # first message is `initialize` would serve the old protocol era.
            self._standby(msg)
            return
        if _nothing_to_redact(msg):
            self._send(_text_result(msg["id"], "{}"))
            return
        if self._forward(msg, line):
            return
        method = msg.get("method")
        if "id" not in msg or not isinstance(method, str):
            return  # a notification or a stray response: nothing to answer
        if method == "tools/call":
            threading.Thread(target=self._call_when_up, args=(msg, line), daemon=True).start()
        else:
            self._standby(msg)

    def _forward(self, msg: dict[str, Any] | None, line: bytes) -> bool:
        """Send to the service if connected; False when it is not."""
        with self._link_lock:
            link = self._link
            if link is None:
                return False
            key = None
            if msg is not None and "id" in msg and "method" in msg:
                key = json.dumps(msg["id"])
                self._pending[key] = (msg, line)
            try:
                link.sendall(line if line.endswith(b"\n") else line + b"\n")
                return True
            except OSError:
                if key is not None:
                    self._pending.pop(key, None)  # not sent: the caller goes on waiting
                self._drop_link_locked()
                return False

    # -- answers without the service ---------------------------------------------------
    def _standby(self, msg: dict[str, Any]) -> None:
        method, msg_id = msg["method"], msg["id"]
        snap = self._load_snapshot()
        if method == "server/discover":
            self._send({"jsonrpc": "2.0", "id": msg_id, "result": snap["discover"]})
        elif method == "initialize":
            self._send({"jsonrpc": "2.0", "id": msg_id, "error": {
                "code": -32022, "message": "connection is serving the 2026-07-28 protocol; "
                "the initialize handshake is not accepted",
                "data": {"supported": ["2026-07-28"], "requested":
                         str((msg.get("params") or {}).get("protocolVersion", ""))}}})
        elif method == "subscriptions/listen":
            # A standing stream: acknowledged, never completed (nothing changes here).
            self._send({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
                        "params": {"_meta": {"io.modelcontextprotocol/subscriptionId": msg_id},
                                   "notifications": {}}})
        elif method == "tools/list":
            self._send({"jsonrpc": "2.0", "id": msg_id, "result": snap["tools"]})
        elif method in ("prompts/list", "resources/list", "resources/templates/list"):
            key = {"prompts/list": "prompts", "resources/list": "resources",
                   "resources/templates/list": "resourceTemplates"}[method]
            self._send({"jsonrpc": "2.0", "id": msg_id, "result": {
                key: [], "cacheScope": "private", "resultType": "complete", "ttlMs": 0}})
        elif method == "ping":
            self._send({"jsonrpc": "2.0", "id": msg_id, "result": {}})
        else:
            self._send(_jsonrpc_error(msg_id, self._unavailable()))

    def _call_when_up(self, msg: dict[str, Any], line: bytes) -> None:
        params = msg.get("params") if isinstance(msg.get("params"), dict) else {}
        assert isinstance(params, dict)
        name = params.get("name")
        hook = name == "policy_check"
        args = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        assert isinstance(args, dict)
        checked = hook and (_main_result_to_check(args) or self._risky_main_call(args))
        if hook and not guarded(args) and not checked and \
                args.get("event") != "UserPromptSubmit":
            # Nothing here starts or feeds an agent (a Stop, the session's end, a
            # compaction): answered now, never holding up the session for the service.
            self._send(_text_result(msg["id"], json.dumps(self._fail_closed(args))))
            return
        # A prompt waits a little: the model acts right after it, and the service pins the
        # session's policy as the session connects, which must come first.
        wait = (self.hold_s if guarded(args) or checked else min(PROMPT_WAIT_S, self.hold_s)) \
            if hook else TOOL_WAIT_S
        token = (params.get("_meta") or {}).get("progressToken") \
            if isinstance(params.get("_meta"), dict) else None
        deadline = time.monotonic() + wait
        beat = 0
        while time.monotonic() < deadline and not self._closing:
            if self._forward(msg, line):
                return
            with self._connected:
                self._connected.wait(timeout=min(2.0, max(0.0, deadline - time.monotonic())))
            if token is not None and not hook:
                beat += 1
                self._send({"jsonrpc": "2.0", "method": "notifications/progress", "params": {
                    "progressToken": token, "progress": beat,
                    "message": f"waiting for Smart Orchestrator's service: {self._problem}"}})
        if self._forward(msg, line):
            return
        if hook:
            self._send(_text_result(msg["id"], json.dumps(self._fail_closed(args))))
        else:
            self._send(_text_result(msg["id"], self._unavailable(), error=True))

    def _fail_closed(self, args: dict[str, Any]) -> dict[str, Any]:
        if _main_result_to_check(args):
            try:
                response = json.loads(str(args.get("tool_response") or "null"))
            except (ValueError, RecursionError):
                response = None
            return hook_output(Decision(
                "PostToolUse", updated_output=_strings_withheld(
                    "" if response is None else response),
                system_message="Smart Orchestrator withheld a tool result: " +
                self._unavailable()))
        reason = "Smart Orchestrator cannot check this call: " + self._unavailable()
        if self._risky_main_call(args):
            return hook_output(Decision("PreToolUse", Verdict.DENY, reason))
        veiled = self._veiled_main_line(args)
        return veiled if veiled is not None else fail_closed(args, reason)

    def _veiled_main_line(self, args: dict[str, Any]) -> dict[str, Any] | None:
        """Without the service nothing resolves a main-agent Bash line: one that names
        nothing risky still runs with the data folder and the transcripts hidden, where
        bubblewrap works (`grep -r -a k ~` names nothing, and would read the key)."""
        from smart_orchestrator.policy import veil

        if args.get("event") != "PreToolUse" or args.get("agent_id") or \
                args.get("tool_name") not in ("Bash", "Monitor"):
            return None
        try:
            tool_input = json.loads(str(args.get("tool_input") or "null"))
        except (ValueError, RecursionError):
            return None
        if not isinstance(tool_input, dict) or not isinstance(tool_input.get("command"), str) \
                or not veil.available()[0]:
            return None
        homes = {h for h in (self.env.get("HOME"), os.path.expanduser("~")) if h}
        configs = {*(Path(h) / ".claude" for h in homes),
                   *([Path(self.env["CLAUDE_CONFIG_DIR"])]
                     if self.env.get("CLAUDE_CONFIG_DIR") else [])}
        hidden = [str(self.data), *(str(c / "projects") for c in configs)]
        return hook_output(Decision("PreToolUse", Verdict.REWRITE, updated_input={
            **tool_input, "command": veil.wrap(tool_input["command"], hidden)}))

    def _risky_main_call(self, args: dict[str, Any]) -> bool:
        """A call of the main agent's own that might reach the plugin's data or Claude
        Code's agent transcripts, which the service would decide on resolved paths: while
        the service is away, one that names such a place, or builds a path (a glob, a
        variable, a substitution), waits for it and is denied if it does not come. The
        model could otherwise kill the service and read the audit key in the gap."""
        if args.get("event") != "PreToolUse" or args.get("agent_id") or \
                str(args.get("tool_name") or "") in AGENT_TOOLS:
            return False
        text = "\n".join(_strings(args.get("tool_input"))).lower()
        return bool(_RISKY.search(text)) or str(self.data).lower() in text

    def _unavailable(self) -> str:
        return (f"its service is not running ({self._problem}). It restarts by itself; if "
                "this persists, run `smart-orchestrator status` and see "
                f"{self.data / 'logs' / 'service.log'}.")

    def _load_snapshot(self) -> dict[str, Any]:
        if self._snapshot is None:
            self._snapshot = json.loads(SNAPSHOT.read_text())
        return self._snapshot

    # -- the link to the service -------------------------------------------------------
    def _connector(self) -> None:
        delay = 0.05
        while not self._closing:
            with self._link_lock:
                linked = self._link is not None
            if linked:
                with self._connected:
                    self._connected.wait(timeout=1.0)
                continue
            if self._connect():
                delay = 0.05
                continue
            self._maybe_start()
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _connect(self) -> bool:
        path = socket_path(self.data)
        if path.parent.exists() and (problem := private_dir_ok(path.parent)) is not None:
            # Whoever made that folder could answer in the service's place.
            self._problem = f"refusing its socket: {problem}"
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(30.0)
            sock.connect(str(path))
            if not _peer_is_me(sock):
                raise OSError("the socket's owner is another user")
            sock.sendall(json.dumps(self.preamble).encode() + b"\n")
            reader = sock.makefile("rb")
            answer = json.loads(reader.readline(64 * 1024) or b"{}")
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                sock.close()
            return False
        if not answer.get("ok"):
            sock.close()
            self._problem = f"restarting: {answer.get('reason', 'refused')}"
            self._last_start = -START_EVERY_S  # start this version's service at once
            return False
        sock.settimeout(None)
        with self._link_lock:
            self._link = sock
        threading.Thread(target=self._from_service, args=(sock, reader), daemon=True).start()
        with self._connected:
            self._connected.notify_all()
        return True

    def _from_service(self, sock: socket.socket, reader: IO[bytes]) -> None:
        for line in iter(lambda: reader.readline(MAX_LINE), b""):
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict) and "id" in msg and "method" not in msg:
                with self._link_lock:
                    self._pending.pop(json.dumps(msg["id"]), None)
            self._write(line if line.endswith(b"\n") else line + b"\n")
        with self._link_lock:
            if self._link is sock:
                self._drop_link_locked()

    def _drop_link_locked(self) -> None:
        """The service went away, and the connector reconnects or restarts it. Hook calls
        it had not answered go to the next service: it decides one the dead service never
        took, and refuses (so blocks) one that service took and left undecided (the claim
        says so). Failing them here instead would block calls a new service decides in a
        moment, with only "hook error" to show for it. Other calls fail: running a tool
        twice is not ours to risk."""
        assert self._link is not None
        with contextlib.suppress(OSError):
            self._link.close()
        self._link = None
        self._problem = "it stopped and is restarting"
        pending, self._pending = self._pending, {}
        for msg, line in pending.values():
            params = msg.get("params")
            if isinstance(params, dict) and params.get("name") == "policy_check":
                threading.Thread(target=self._call_when_up, args=(msg, line),
                                 daemon=True).start()
            else:
                self._send(_jsonrpc_error(msg["id"], "Smart Orchestrator's service stopped "
                                          "before answering; it is restarting. Try again."))

    def _maybe_start(self) -> None:
        if self._child is not None and self._child.poll() is None:
            return  # ours is still starting (or building the environment)
        if held(service_lock(self.data)):
            self._problem = "the service is starting"
            return  # one is running or starting: wait for its socket
        now = time.monotonic()
        if now - self._last_start < START_EVERY_S:
            return  # the last one we started died at once: do not spin
        self._last_start = now
        log = self.data / "logs" / "service.log"
        env = {k: v for k, v in self.env.items() if k not in _SESSION_VARS}
        env.setdefault("SMART_ORCHESTRATOR_DATA", str(self.data))
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("ab") as fh:
                self._child = subprocess.Popen(
                    [sys.executable, str(LAUNCHER), "service"], cwd=self.data, env=env,
                    stdin=subprocess.DEVNULL, stdout=fh, stderr=fh, start_new_session=True)
        except OSError as exc:
            self._problem = f"it could not be started: {exc}"
            return
        self._problem = ("installing its Python environment (first session after install, "
                         "about a minute)" if held(self.data / "venv.lock")
                         else "the service is starting")

    # -- output ------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        self._write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        with self._out_lock:
            try:
                self.stdout.write(data)
                self.stdout.flush()
            except (OSError, ValueError):
                self._closing = True


# Names of the places the service keeps from the main agent, and what builds a path the
# shim cannot resolve without it. Over-broad on purpose: it applies only while the service
# is away.
_RISKY = re.compile(r"claude|witness|state\.|projects|subagents|tasks|tool-results|\.output|"
                    r"plugins|orchestrator|/proc/|[*?\[$`\\{]|\b(?:ln|link|cp|mv|rsync|tar|"
                    r"python\d*|perl|ruby|node|sh|bash|zsh|eval|source)\b")


def _strings(raw: Any) -> list[str]:
    """The string values of a hook argument that holds JSON (the input as sent when it is
    not JSON), keys included: a path may be a key as well as a value."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except (ValueError, RecursionError):
        return [str(raw)]
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            out.extend(str(k) for k in item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _nothing_to_redact(msg: dict[str, Any]) -> bool:
    """A tool result (not an agent's) that no check needs: a subagent's, or the main
    agent's in a session that started no subagent (whose transcripts are what the service
    redacts from the main agent's results). Answered here: no round trip to the service."""
    params = msg.get("params")
    if msg.get("method") != "tools/call" or not isinstance(params, dict) or \
            params.get("name") != "policy_check" or "id" not in msg:
        return False
    args = params.get("arguments")
    if not isinstance(args, dict) or args.get("event") != "PostToolUse" or \
            str(args.get("tool_name") or "") in AGENT_TOOLS:
        return False
    if args.get("agent_id"):
        return True
    transcript = str(args.get("transcript_path") or "")
    return transcript.endswith(".jsonl") and not _has_subagents(args)


def _has_subagents(args: dict[str, Any]) -> bool:
    transcript = str(args.get("transcript_path") or "")
    return transcript.endswith(".jsonl") and \
        Path(transcript[: -len(".jsonl")], "subagents").is_dir()


def _main_result_to_check(args: dict[str, Any]) -> bool:
    """The main agent's own tool result in a session whose subagents left transcripts:
    the service redacts their credentials from it, so without the service it is
    withheld (a model that kills the service must not read them meanwhile)."""
    return args.get("event") == "PostToolUse" and not args.get("agent_id") and \
        str(args.get("tool_name") or "") not in AGENT_TOOLS and _has_subagents(args)


def _strings_withheld(value: Any, depth: int = 0) -> Any:
    """`value` in its own shape (Claude Code ignores a rewrite of another shape) with
    every string replaced."""
    if isinstance(value, str):
        return ("[Smart Orchestrator withheld this result: its service could not check it "
                "for credentials from subagent transcripts.]")
    if depth > 50:
        return None
    if isinstance(value, dict):
        return {k: _strings_withheld(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_strings_withheld(v, depth + 1) for v in value]
    return value


def _peer_is_me(sock: socket.socket) -> bool:
    import struct

    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return bool(struct.unpack("3i", creds)[1] == os.getuid())


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def main() -> int:
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    return Shim(data, stdin=sys.stdin.buffer, stdout=sys.stdout.buffer).run()
