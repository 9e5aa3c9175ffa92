"""A loopback Anthropic Messages API that answers Claude Code from a script.

Requests are routed to conversations: the main agent, a subagent (picked by a substring of its
prompt) or a directly started agent (picked by a substring of its first user message). A
conversation's turn number is the count of assistant messages already in the request, so
routing is stateless and parallel subagents can call at once.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .model_log import Kind, ModelRequest, ToolResult
from .replies import (
    ApiError,
    Reply,
    Turn,
    error_headers,
    error_json,
    materialize,
    message_json,
    new_id,
    sse_body,
    turn,
)
from .replies import text as text_turn

__all__ = ["UNSCRIPTED", "Rule", "ScriptEntry", "ScriptedModel"]

SUBAGENT_MARKER = " cc_is_subagent=true;"
UNSCRIPTED = "(unscripted)"
_EXTRA_PHRASES = {529: "Overloaded"}

# A script entry: a Turn, an ApiError, or a list of turns/blocks merged into one message.
ScriptEntry = Reply | Sequence[Turn]
Rule = Callable[[ModelRequest], "Reply | Sequence[Turn] | None"]


def _as_reply(entry: ScriptEntry) -> Reply:
    if isinstance(entry, Turn | ApiError):
        return entry
    return turn(*entry)


@dataclass(slots=True)
class _Slot:
    """One turn of a conversation: errors served first (in order), then the turn."""

    errors: list[ApiError] = field(default_factory=list)
    final: Turn | None = None


@dataclass(slots=True)
class _Conversation:
    name: str
    kind: Kind
    match: str | None
    slots: list[_Slot]
    served_turns: set[int] = field(default_factory=set)


def _slots(entries: Iterable[ScriptEntry]) -> list[_Slot]:
    slots, current = [], _Slot()
    for reply in map(_as_reply, entries):
        if isinstance(reply, ApiError):
            current.errors.append(reply)
        else:
            current.final = reply
            slots.append(current)
            current = _Slot()
    if current.errors:
        slots.append(current)
    return slots


class ScriptedModel:
    """Scripted Messages API on 127.0.0.1. Use as a context manager; `base_url` for the CLI."""

    def __init__(self, *, model: str | None = None) -> None:
        self._model_name = model
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._conversations: list[_Conversation] = []
        self._main: _Conversation | None = None
        self._rules: list[Rule] = []
        self._attempts: dict[tuple[str, int], int] = {}
        self._requests: list[ModelRequest] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- scripting -----------------------------------------------------------------------

    def main(self, turns: Iterable[ScriptEntry]) -> None:
        """Script the main agent (any non-subagent request no `agent()` script claims)."""
        with self._lock:
            self._main = _Conversation("main", "main", None, _slots(turns))

    def subagent(
        self, match: str, turns: Iterable[ScriptEntry], *, name: str | None = None
    ) -> None:
        """Script every subagent whose prompt contains `match` (first script that matches
        wins); the conversation is named `name or match`."""
        self._add(_Conversation(name or match, "subagent", match, _slots(turns)))

    def agent(self, match: str, turns: Iterable[ScriptEntry], *, name: str | None = None) -> None:
        """Script a directly started agent whose first user message contains `match`."""
        self._add(_Conversation(name or match, "agent", match, _slots(turns)))

    def on(self, rule: Rule) -> Rule:
        """Add a dynamic rule, tried before scripts: it returns a reply, or None to pass."""
        with self._lock:
            self._rules.append(rule)
        return rule

    def _add(self, conversation: _Conversation) -> None:
        with self._lock:
            if any(c.name == conversation.name for c in self._conversations):
                raise ValueError(f"conversation {conversation.name!r} is already scripted")
            self._conversations.append(conversation)

    # ---- reading the log -------------------------------------------------------------------

    @property
    def requests(self) -> list[ModelRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, conversation: str) -> list[ModelRequest]:
        return [r for r in self.requests if r.conversation == conversation]

    def tool_results(self, conversation: str = "main") -> list[ToolResult]:
        """Tool results the CLI sent back in a conversation, deduplicated, oldest first."""
        seen: dict[str, ToolResult] = {}
        for request in self.requests_for(conversation):
            for result in request.tool_results:
                seen.setdefault(result.tool_use_id, result)
        return list(seen.values())

    @property
    def unscripted(self) -> list[ModelRequest]:
        return [r for r in self.requests if r.unscripted]

    def assert_no_unscripted(self) -> None:
        """No request fell through to the "(unscripted)" fallback or hit a failing rule."""
        if stray := self.unscripted:
            lines = []
            for r in stray:
                lines.append(f"  {r.method} {r.path} {r.conversation} turn {r.turn}: "
                             f"{r.prompt[-120:]!r}")
                lines += [f"    {line}" for line in r.note.splitlines()]
            raise AssertionError("unscripted model requests:\n" + "\n".join(lines))

    def assert_all_served(self) -> None:
        """Every scripted turn was answered at least once, and nothing unscripted happened."""
        self.assert_no_unscripted()
        with self._lock:
            scripted = [c for c in [self._main, *self._conversations] if c is not None]
            missing = [f"{c.name}: turns {sorted(set(range(len(c.slots))) - c.served_turns)}"
                       for c in scripted if len(c.served_turns) < len(c.slots)]
        if missing:
            raise AssertionError("scripted turns never requested:\n  " + "\n  ".join(missing))

    def wait_for(self, predicate: Callable[[ModelRequest], bool], timeout: float) -> ModelRequest:
        """Block until an answered request satisfies `predicate`; AssertionError at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for request in self._requests:
                    if request.answered_at is not None and predicate(request):
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no matching model request within {timeout} s")
                self._lock.wait(remaining)

    # ---- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ScriptedModel is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> ScriptedModel:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.model = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="scripted-model",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()  # cuts scripted delays short
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedModel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- answering (called from handler threads) -------------------------------------------

    def _route(self, request: ModelRequest) -> _Conversation | None:
        is_sub = SUBAGENT_MARKER in request.system_text
        first = request.first_user_text
        wanted: Kind = "subagent" if is_sub else "agent"
        for conversation in self._conversations:
            if conversation.kind == wanted and conversation.match and conversation.match in first:
                return conversation
        return None if is_sub else self._main

    def _log(self, method: str, path: str, headers: dict[str, str],
             body: dict[str, Any] | None, *, routed: bool = False) -> ModelRequest:
        with self._lock:
            request = ModelRequest(len(self._requests), method, path, headers, body,
                                   "other", "other", 0, time.monotonic())
            if routed:
                conversation = self._route(request)
                if conversation is not None:
                    request.kind, request.conversation = conversation.kind, conversation.name
                else:
                    is_sub = SUBAGENT_MARKER in request.system_text
                    request.kind = request.conversation = "subagent" if is_sub else "main"
                request.turn = sum(1 for m in request.messages if m.get("role") == "assistant")
            self._requests.append(request)
            return request

    def _choose(self, request: ModelRequest) -> Reply | None:
        for rule in list(self._rules):
            if (reply := rule(request)) is not None:
                return _as_reply(reply)
        with self._lock:
            conversation = self._route(request)
            if conversation is None or request.turn >= len(conversation.slots):
                return None
            slot = conversation.slots[request.turn]
            # Counted per conversation turn, not per prompt text: a retry that sends a
            # different prompt (less context) is still the same turn of the same agent.
            key = (conversation.name, request.turn)
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            served = 0
            for error in slot.errors:
                if error.times is None or attempt < served + error.times:
                    return error
                served += error.times
            if slot.final is not None:
                conversation.served_turns.add(request.turn)
            return slot.final

    def _answer(self, request: ModelRequest) -> tuple[int, dict[str, str], bytes]:
        try:
            reply = self._choose(request)
        except Exception as exc:  # a broken rule must fail the test, not leave the CLI hanging
            request.unscripted = True
            request.note = traceback.format_exc()
            reply = ApiError(400, "invalid_request_error", f"scripted rule raised {exc!r}")
        if reply is None:
            request.unscripted = True
            reply = text_turn(UNSCRIPTED)
        request.reply = reply
        if reply.delay:
            self._stopping.wait(reply.delay)
        if isinstance(reply, ApiError):
            request_id = new_id("req")
            payload = json.dumps(error_json(reply, request_id)).encode()
            headers = {"content-type": "application/json", **error_headers(reply, request_id)}
            return reply.status, headers, payload
        body = request.body or {}
        model = self._model_name or body.get("model", "claude-scripted")
        content = materialize(reply)
        if body.get("stream"):
            headers = {"content-type": "text/event-stream", "cache-control": "no-cache"}
            return 200, headers, sse_body(content, reply.effective_stop_reason, model,
                                           reply.usage)
        message = message_json(content, reply.effective_stop_reason, model, reply.usage)
        return 200, {"content-type": "application/json"}, json.dumps(message).encode()

    def _answered(self, request: ModelRequest) -> None:
        with self._lock:
            request.answered_at = time.monotonic()
            self._lock.notify_all()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "scripted-model"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean; the model's request log has everything."""

    def do_GET(self) -> None:
        self._not_found(None)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = None
        route = self.path.split("?", 1)[0]
        if route == "/v1/messages" and isinstance(body, dict):
            self._messages(body)
        elif route == "/v1/messages/count_tokens" and isinstance(body, dict):
            self._count_tokens(body)
        else:
            self._not_found(body)

    @property
    def _model(self) -> ScriptedModel:
        return self.server.model  # type: ignore[attr-defined,no-any-return]

    def _messages(self, body: dict[str, Any]) -> None:
        request = self._model._log("POST", self.path, dict(self.headers), body, routed=True)
        try:
            status, headers, payload = self._model._answer(request)
            self._send(status, headers, payload)
        finally:
            self._model._answered(request)

    def _count_tokens(self, body: dict[str, Any]) -> None:
        request = self._model._log("POST", self.path, dict(self.headers), body)
        tokens = max(1, len(json.dumps(body.get("messages", []))) // 4)
        self._send(200, {"content-type": "application/json"},
                   json.dumps({"input_tokens": tokens}).encode())
        self._model._answered(request)

    def _not_found(self, body: Any) -> None:
        request = self._model._log(self.command, self.path, dict(self.headers),
                                   body if isinstance(body, dict) else None)
        request.unscripted = True
        error = ApiError(404, "not_found_error", f"scripted model has no route {self.path}")
        self._send(404, {"content-type": "application/json"},
                   json.dumps(error_json(error, new_id("req"))).encode())
        self._model._answered(request)

    def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = _EXTRA_PHRASES.get(status, "Error")
        try:
            self.send_response(status, phrase)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except ConnectionError:
            # The CLI gave up on this request (timeout, abort): nothing left to answer.
            self.close_connection = True
