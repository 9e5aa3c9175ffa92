"""The per-user service: one warm process that serves every session's `orchestrator` MCP
connection, and so decides every hook event, over a Unix socket.

Claude Code starts the plugin's MCP server once per session as `bin/smart-orchestrator
shim` (`mcp_server/shim.py`): a standard-library process that connects here, starting this
service when none runs, says which session it is (the preamble), then relays the session's
MCP traffic unchanged. So a session pays for a Python start of a few tens of milliseconds,
not for importing `mcp` and the policy engine, and hook decisions never start a process.

Wire format on the socket: the shim sends one JSON line (the preamble: session id, project
folder, Claude Code's pid, the plugin's stamp), the service answers one JSON line, then
both sides speak MCP's stdio framing (one JSON-RPC message per line).

Only the user who runs the service can connect: the socket lives in a folder only they can
enter, and the service checks each peer's uid (SO_PEERCRED). A shim of another plugin
version is told to restart the service, so an update never talks to old code.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import IO, Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from smart_orchestrator import session
from smart_orchestrator.beacon import ServerBeacon
from smart_orchestrator.paths import data_dir

from .hook_call import SERVER_INFO, HookCall, answered_first, parse_hook_call, tool_result
from .hook_decide import decide_hook, fail_closed
from .service_wire import (
    MAX_LINE,
    plugin_stamp,
    private_dir_ok,
    ready_marker,
    service_lock,
    socket_path,
)

__all__ = ["main"]

IDLE_EXIT_S = 15 * 60.0
# The SDK's import starts once the first session's policy is pinned, or after this long
# without one: loaded at once it would compete for the interpreter with that first pin.
SDK_LOAD_AFTER_S = 1.0
# How long a session's Claude Code process may outlive its last connection and still
# count as ended by it (`-p` closes its MCP servers just before it exits).
SESSION_EXIT_WAIT_S = 30.0


class _Sdk:
    """The MCP SDK's server, loaded in the background after the service is listening.

    Importing `mcp` takes about two seconds; hook calls (the direct path) and the policy
    pin need none of it, so a session that starts the service waits only for the policy
    engine. Other MCP traffic waits for `ready`."""

    def __init__(self) -> None:
        self.ready = anyio.Event()
        self.wanted = anyio.Event()
        self.server: Any = None
        self.error: str | None = None

    async def load(self) -> None:
        with anyio.move_on_after(SDK_LOAD_AFTER_S):
            await self.wanted.wait()
        for attempt in range(3):
            try:
                self.server = await anyio.to_thread.run_sync(_build_lowlevel_server)
                break
            except Exception as exc:  # hook calls still work; other messages get the reason
                # Importing in a thread while decisions import too can end in Python's
                # import-deadlock error for one of them; the next attempt finds the modules.
                self.error = f"the MCP server could not be loaded: {type(exc).__name__}: {exc}"
                print(f"smart-orchestrator: {self.error} (attempt {attempt + 1})",
                      file=sys.stderr, flush=True)
                await anyio.sleep(0.5)
        self.ready.set()


def _build_lowlevel_server() -> Any:
    from .server import build_server

    return build_server()._lowlevel_server


class _Service:
    def __init__(self, data: Path, stamp: str, idle_exit_s: float) -> None:
        self.data = data
        self.stamp = stamp
        self.idle_exit_s = idle_exit_s
        self.started = time.time()
        self.connections = 0
        self.last_active = time.monotonic()
        self.beacons: dict[str, tuple[ServerBeacon, int]] = {}
        self.open_sessions: dict[str, int] = {}  # session id -> its open connections
        self.seen = _SessionsSeen()
        self.stopping: anyio.Event | None = None

    async def handle(self, stream: anyio.abc.SocketStream, sdk: _Sdk, state: Any) -> None:
        async with stream:
            if not _same_user(stream):
                return
            buffered = BufferedByteReceiveStream(stream)
            try:
                preamble = json.loads(await buffered.receive_until(b"\n", 64 * 1024))
                policy = preamble.get("policy_file")
                info = session.SessionInfo(str(preamble["session_id"]),
                                           Path(str(preamble["project_dir"])),
                                           _pid(preamble.get("claude_pid")),
                                           Path(policy).expanduser()
                                           if isinstance(policy, str) and policy else None)
            except (ValueError, KeyError, TypeError, anyio.EndOfStream,
                    anyio.IncompleteRead, anyio.DelimiterNotFound):
                return
            if preamble.get("stamp") != self.stamp:
                # Another version of the plugin: its code, not ours, must answer. Stop
                # taking connections; the shim starts the new version's service.
                await _send_line(stream, {"ok": False, "restart": True,
                                          "reason": "plugin version changed"})
                self.stop()
                return
            await _send_line(stream, {"ok": True, "pid": os.getpid(), "since": self.started})
            self.connections += 1
            self._hold_beacon(info.session_id)
            self.open_sessions[info.session_id] = self.open_sessions.get(info.session_id, 0) + 1
            token = session.bind(info)
            try:
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_pin_policy, state, info.session_id, sdk)
                        await _serve_mcp(buffered, stream, sdk, state, self.seen)
                finally:
                    left = self.open_sessions[info.session_id] - 1
                    if left:
                        self.open_sessions[info.session_id] = left
                    else:
                        del self.open_sessions[info.session_id]
                await self._end_if_gone(info, state)
            finally:
                session.unbind(token)
                self._drop_beacon(info.session_id)
                self.connections -= 1
                self.last_active = time.monotonic()

    async def _end_if_gone(self, info: session.SessionInfo, state: Any) -> None:
        """End the session here when its Claude Code process exits without its SessionEnd
        hook having reached us. `claude -p` closes its MCP servers before it runs that
        hook, so an `mcp_tool` SessionEnd never arrives there: without this its leases
        stay held until they expire, its reservations unsettled and its open agents
        uncounted. Decided through the hook's own path, so it is recorded as one."""
        sid = info.session_id
        if not sid or info.claude_pid is None or self.open_sessions.get(sid) \
                or self.seen.ended(sid):
            return
        if not await anyio.to_thread.run_sync(_exited, info.claude_pid, SESSION_EXIT_WAIT_S):
            return  # still running: the MCP server was only restarted
        if self.open_sessions.get(sid) or self.seen.ended(sid):
            return
        args = {"event": "SessionEnd", "session_id": sid,
                "transcript_path": self.seen.transcript(sid)}
        await anyio.to_thread.run_sync(_decide_hook, state, args)

    def _hold_beacon(self, session_id: str) -> None:
        # The beacon tells `status` that this session's server is up; several connections
        # of one session share it.
        beacon, count = self.beacons.get(session_id, (ServerBeacon(self.data, session_id), 0))
        if count == 0 and not beacon.hold():
            return
        self.beacons[session_id] = (beacon, count + 1)

    def _drop_beacon(self, session_id: str) -> None:
        held = self.beacons.get(session_id)
        if held is None:
            return
        beacon, count = held
        if count <= 1:
            beacon.release()
            del self.beacons[session_id]
        else:
            self.beacons[session_id] = (beacon, count - 1)

    def stop(self) -> None:
        if self.stopping is not None:
            self.stopping.set()

    async def watch(self, state: Any, sdk: _Sdk) -> None:
        """Beat every held beacon; exit when idle, or when the socket is no longer ours
        (its folder was removed, or another service replaced it)."""
        sock = socket_path(self.data)
        ours = sock.stat().st_ino
        while True:
            for beacon, _ in list(self.beacons.values()):
                beacon.beat()
            try:
                if sock.stat().st_ino != ours:
                    break
            except OSError:
                break
            idle = time.monotonic() - self.last_active
            if self.connections == 0 and idle > self.idle_exit_s and \
                    not (sdk.ready.is_set() and _waves_running(state)):
                break
            await anyio.sleep(1.0)
        self.stop()


async def _pin_policy(state: Any, session_id: str, sdk: _Sdk) -> None:
    """Pin the session's policy as it connects, before its model acts (the SessionStart
    hook runs no Python). Its first checked event pins it anyway if this fails."""
    def pin() -> None:
        if session_id:
            state.engine_factory().get(session_id)

    try:
        await anyio.to_thread.run_sync(pin)
    except Exception as exc:  # not the gate: logged, the next event pins
        print(f"smart-orchestrator: could not pin session {session_id[:8]}'s policy: {exc}",
              file=sys.stderr, flush=True)
    sdk.wanted.set()


def _waves_running(state: Any) -> bool:
    from .wave_tools import waves_running

    return waves_running(state)


class _SessionsSeen:
    """What the hook calls told the service about each session: whether its SessionEnd
    hook arrived, and its transcript (beside which its subagents' transcripts lie)."""

    MAX = 4096

    def __init__(self) -> None:
        self._ended: set[str] = set()
        self._transcripts: dict[str, str] = {}

    def note(self, args: dict[str, Any]) -> None:
        sid = str(args.get("session_id") or "")
        if not sid:
            return
        if args.get("event") == "SessionEnd":
            if len(self._ended) >= self.MAX:
                self._ended.clear()
            self._ended.add(sid)
        path = args.get("transcript_path")
        if isinstance(path, str) and path:
            if len(self._transcripts) >= self.MAX:
                self._transcripts.pop(next(iter(self._transcripts)))
            self._transcripts[sid] = path

    def ended(self, session_id: str) -> bool:
        return session_id in self._ended

    def transcript(self, session_id: str) -> str:
        return self._transcripts.get(session_id, "")


def _exited(pid: int, within_s: float) -> bool:
    import psutil

    try:
        psutil.Process(pid).wait(timeout=within_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # TimeoutExpired included: still running, or not ours to see
        return False
    return True


async def _serve_mcp(buffered: BufferedByteReceiveStream, stream: anyio.abc.SocketStream,
                     sdk: _Sdk, state: Any, seen: _SessionsSeen) -> None:
    """MCP's stdio framing over the socket (as `mcp.server.stdio.stdio_server` does over
    the process's own stdin and stdout). Hook calls are answered directly (`hook_call.py`),
    from the first line on; every other message goes through the SDK once it is loaded."""
    send_lock = anyio.Lock()  # the SDK's answers and the direct ones share the socket
    to_sdk, for_sdk = anyio.create_memory_object_stream[bytes](float("inf"))

    async def send(data: bytes) -> None:
        async with send_lock:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stream.send(data)

    # Events answered before they were decided (`answered_first`) and not decided yet:
    # every later call of the connection is decided after them, as if they had been
    # answered in turn (a subagent's first tool call after its start is recorded).
    recording: list[anyio.Event] = []

    async def answer(call: HookCall, before: list[anyio.Event]) -> None:
        for earlier in before:
            await earlier.wait()
        text, refused = await anyio.to_thread.run_sync(_decide_hook, state, call.arguments)
        if not refused:
            seen.note(call.arguments)
        await send(tool_result(call.msg_id, text, SERVER_INFO, error=refused))

    async def record(call: HookCall, before: list[anyio.Event], done: anyio.Event) -> None:
        with anyio.CancelScope(shield=True):  # a session that ends still has it recorded
            try:
                for earlier in before:
                    await earlier.wait()
                await anyio.to_thread.run_sync(_decide_hook, state, call.arguments)
            finally:
                done.set()
                recording.remove(done)

    async def reader(tg: anyio.abc.TaskGroup) -> None:
        async with to_sdk:
            while True:
                try:
                    line = await buffered.receive_until(b"\n", MAX_LINE)
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError,
                        anyio.ClosedResourceError):
                    break
                except anyio.DelimiterNotFound:
                    break  # a message over the limit: the shim answers for its id
                if (call := parse_hook_call(line)) is not None:
                    before = list(recording)
                    if answered_first(call.arguments):
                        await send(tool_result(call.msg_id, "{}", SERVER_INFO))
                        recording.append(done := anyio.Event())
                        tg.start_soon(record, call, before, done)
                    else:
                        tg.start_soon(answer, call, before)
                    continue
                await to_sdk.send(line)
        if not sdk.ready.is_set():
            tg.cancel_scope.cancel()  # the session left before the SDK was needed

    async with anyio.create_task_group() as tg:
        tg.start_soon(reader, tg)
        await sdk.ready.wait()
        if sdk.server is None:
            async with for_sdk:
                async for line in for_sdk:
                    await send(_unavailable(line, sdk.error or "not loaded"))
        else:
            await _sdk_session(for_sdk, send, sdk.server, state)
        tg.cancel_scope.cancel()


async def _sdk_session(lines: Any, send: Any, server: Any, state: Any) -> None:
    import mcp_types as types
    from mcp.server.runner import serve_dual_era_loop
    from mcp.shared._context_streams import create_context_streams
    from mcp.shared.message import SessionMessage

    read_writer, read_stream = create_context_streams[SessionMessage | Exception](0)
    write_stream, write_reader = create_context_streams[SessionMessage](0)

    async def pump() -> None:
        async with read_writer, lines:
            async for line in lines:
                try:
                    message = types.jsonrpc_message_adapter.validate_json(line, by_name=False)
                except Exception as exc:  # the SDK answers a parse error for it
                    await read_writer.send(exc)
                    continue
                await read_writer.send(SessionMessage(message))

    async def writer() -> None:
        async with write_reader:
            async for msg in write_reader:
                data = msg.message.model_dump_json(by_alias=True, exclude_unset=True)
                await send(data.encode() + b"\n")

    async with anyio.create_task_group() as tg:
        tg.start_soon(pump)
        tg.start_soon(writer)
        await serve_dual_era_loop(server, read_stream, write_stream, lifespan_state=state,
                                  init_options=server.create_initialization_options())
        tg.cancel_scope.cancel()


def _unavailable(line: bytes, why: str) -> bytes:
    """A request's error answer when the SDK could not be loaded; nothing for the rest."""
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError):
        return b""
    if not isinstance(msg, dict) or "id" not in msg or "method" not in msg:
        return b""
    return json.dumps({"jsonrpc": "2.0", "id": msg["id"], "error": {
        "code": -32603, "message": f"Smart Orchestrator's service: {why}"}}).encode() + b"\n"


def _decide_hook(state: Any, args: dict[str, Any]) -> tuple[str, bool]:
    try:
        return decide_hook(state, args)
    except Exception as exc:  # boundary of a security hook: fail closed, never drop it
        from smart_orchestrator.policy.engine import _log_crash

        return fail_closed(args, f"internal error ({type(exc).__name__}); details in "
                                 f"{_log_crash(exc)}"), False


async def _send_line(stream: anyio.abc.SocketStream, value: dict[str, Any]) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        await stream.send(json.dumps(value).encode() + b"\n")


def _same_user(stream: anyio.abc.SocketStream) -> bool:
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    try:
        creds = raw.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _pid(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


async def _run(data: Path, lock: IO[str], idle_exit_s: float) -> None:
    from .state import service_state

    service = _Service(data, plugin_stamp(), idle_exit_s)
    service.stopping = anyio.Event()
    sdk = _Sdk()
    path = socket_path(data)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (problem := private_dir_ok(path.parent)) is not None:
        raise SystemExit(f"smart-orchestrator: refusing to serve: {problem}")
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # left by a service that died: the lock says none runs
    listener = await anyio.create_unix_listener(path, mode=0o600)
    ino = path.stat().st_ino
    async with service_state(lambda: sdk.ready.is_set()) as state, listener, \
            anyio.create_task_group() as tg:
        async def accept() -> None:
            await listener.serve(lambda s: service.handle(s, sdk, state), task_group=tg)

        tg.start_soon(accept)
        tg.start_soon(service.watch, state, sdk)
        tg.start_soon(sdk.load)
        await tg.start(_stop_on_signal, service)  # before service.json says we are up
        ready_marker(data).write_text(json.dumps({"pid": os.getpid(), "since": service.started,
                                                  "stamp": service.stamp}))
        print(f"smart-orchestrator: service {os.getpid()} listening on {path}",
              file=sys.stderr, flush=True)
        await service.stopping.wait()
        tg.cancel_scope.cancel()
    with contextlib.suppress(OSError):
        if path.stat().st_ino == ino:  # not a newer service's socket
            path.unlink()
    with contextlib.suppress(OSError):
        ready_marker(data).unlink()
    lock.close()


async def _stop_on_signal(service: _Service, *,
                          task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                          ) -> None:
    # A polite stop (an update, a user's kill) ends waves resumably and removes the socket.
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        task_status.started()
        async for _ in signals:
            service.stop()
            return


def main() -> int:
    data = data_dir()
    data.mkdir(parents=True, exist_ok=True)
    lock = service_lock(data).open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return 0  # another service runs for this data folder
    os.chdir(data)  # not any one project's folder: sessions say theirs
    idle = float(os.environ.get("SMART_ORCHESTRATOR_SERVICE_IDLE_S") or IDLE_EXIT_S)
    anyio.run(_run, data, lock, idle)
    return 0
