"""The real agent runner: claude-agent-sdk `query()` over the bundled Claude Code CLI.

The only module of the wave core that imports the SDK. One process per attempt; the
prompt is a stream, so a reformat request continues the same conversation in the same
process. The process never waits on a permission prompt (`dontAsk`: anything not allowed
is denied), gets a clean environment with a marker that finds its tree, and is killed
with its whole tree on timeout or cancellation before the SDK's own shutdown runs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKError,
    CLIConnectionError,
    HookMatcher,
    ProcessError,
    ResultError,
    ResultMessage,
    SystemMessage,
    query,
)

from ..budget.ratelimit import CLI_LONGEST_RETRY_AFTER_S
from ..claude_cli import bundled_claude, clean_agent_env
from ..errors import OrchestratorError
from ..paths import data_dir
from ._proc import AGENT_MARKER_ENV, find_child, kill_tree
from .agents import AgentOutcome, AgentRequest
from .recovery import ErrorClass, classify
from .sandbox import BashSandbox, SandboxMode, may_run_bash, probe_sandbox

__all__ = ["CLI_RETRIES", "HookCallback", "HooksFactory", "SdkAgentRunner"]

# A hook callback as the SDK calls it: (input, tool_use_id, context) -> hook output.
HookCallback = Callable[[Any, str | None, Any], Awaitable[Any]]
# Plain event -> callback maps per agent (the policy core's shape, free of SDK types).
HooksFactory = Callable[[AgentRequest], Mapping[str, HookCallback] | None]
_CLOSE_BOUND_S = 20.0
_SDK_SETS = frozenset({"CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"})
# Claude Code's own retries of a failed API request, per request. One, because only Claude
# Code reads a reply's Retry-After: with none it drops the headers and the result says
# "429" alone. It says before each retry how long it waits (`api_retry`), which closes the
# shared gate for that long; a request that still fails is the wave's to retry.
CLI_RETRIES = 1


@dataclass(slots=True)
class _Tally:
    results: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    model: str | None = None
    api_status: int | None = None
    retry_after_s: float | None = None
    turns: int = 0
    session_id: str | None = None
    text: str = ""
    error: tuple[ErrorClass, str] | None = None
    stderr: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    cli_retries: int = 0  # what Claude Code was allowed per request
    # The CLI's last retry of the request in flight, (attempt, of how many); None once a
    # reply came.
    retrying: tuple[int, int] | None = None

    def replied(self, msg: AssistantMessage) -> None:
        if msg.error is None and msg.parent_tool_use_id is None:
            self.retrying = None

    def add(self, msg: ResultMessage) -> None:
        usage = msg.usage or {}
        self.results += 1
        self.input_tokens += int(usage.get("input_tokens") or 0)
        self.output_tokens += int(usage.get("output_tokens") or 0)
        self.cache_read_tokens += int(usage.get("cache_read_input_tokens") or 0)
        self.cache_write_tokens += int(usage.get("cache_creation_input_tokens") or 0)
        if msg.model_usage:
            self.model = str(next(iter(msg.model_usage)))
        self.api_status = msg.api_error_status or self.api_status
        if msg.api_error_status == 429 and self._retry_declined():
            # Claude Code retries a 429 unless its Retry-After is over its ceiling: the
            # reply asked for at least that long.
            self.retry_after_s = max(self.retry_after_s or 0.0, CLI_LONGEST_RETRY_AFTER_S)
        # The CLI reports the session's running total with each result.
        self.cost_usd = max(self.cost_usd, float(msg.total_cost_usd or 0.0))
        self.turns += msg.num_turns
        self.session_id = msg.session_id
        self.text = msg.result or ""
        if msg.is_error:
            text = msg.result or "; ".join(msg.errors or []) or msg.subtype
            self.error = (classify(status=msg.api_error_status, text=text,
                                   subtype=msg.subtype), _one_line(text))

    def _retry_declined(self) -> bool:
        """The request failed while Claude Code still had a retry for it."""
        if self.cli_retries <= 0:
            return False
        return self.retrying is None or self.retrying[0] < self.retrying[1]

    def outcome(self, pid: int | None, error: tuple[ErrorClass, str] | None = None
                ) -> AgentOutcome:
        error = error or self.error
        common: dict[str, Any] = dict(
            input_tokens=self.input_tokens, output_tokens=self.output_tokens,
            cost_usd=self.cost_usd, turns=self.turns, session_id=self.session_id, pid=pid,
            cache_read_tokens=self.cache_read_tokens, cache_write_tokens=self.cache_write_tokens,
            model=self.model, api_status=self.api_status, retry_after_s=self.retry_after_s)
        if error is not None:
            return AgentOutcome(False, self.text, error[0], error[1], **common)
        if self.results == 0:
            tail = " | ".join(self.stderr)
            return AgentOutcome(False, "", ErrorClass.CRASH,
                                "agent ended without a result" + (f": {tail}" if tail else ""),
                                **common)
        return AgentOutcome(True, self.text, **common)


class SdkAgentRunner:
    """`make_hooks(request)` supplies in-process hook callbacks (the policy core) per agent,
    as event -> callback; the runner registers each for every tool of that event."""

    def __init__(self, *, cli_path: str | Path | None = None,
                 make_hooks: HooksFactory | None = None,
                 cli_max_retries: int = CLI_RETRIES,
                 setting_sources: Sequence[str] = (),
                 extra_env: Mapping[str, str] | None = None,
                 sandbox: SandboxMode = "auto") -> None:
        self._cli_path = cli_path
        self._sandbox_mode: SandboxMode = sandbox
        self._sandbox: BashSandbox | None = None
        self._make_hooks = make_hooks
        # The wave's retry policy backs off, simplifies, counts failures for the breaker and
        # stops on a quota wall; Claude Code's own retries (`CLI_RETRIES`) only add the one
        # that reads the reply's Retry-After. 0 leaves every retry to the wave.
        self._cli_max_retries = cli_max_retries
        # No settings from disk by default: a user's plugins (this one included) would
        # otherwise load into every wave agent.
        self._setting_sources = list(setting_sources)
        self._extra_env = dict(extra_env or {})

    def _options(self, request: AgentRequest, tally: _Tally) -> ClaudeAgentOptions:
        try:
            cli = self._cli_path or bundled_claude()
        except OrchestratorError:
            cli = None  # the SDK raises CLINotFoundError, classified as a config error
        return ClaudeAgentOptions(
            system_prompt=request.agent.system_prompt,
            model=request.agent.model,
            allowed_tools=list(request.allowed_tools),
            permission_mode="dontAsk",
            max_turns=request.max_turns,
            max_budget_usd=request.budget_usd,
            cwd=request.cwd,
            cli_path=cli,
            env=self._env(request),
            setting_sources=self._setting_sources,  # type: ignore[arg-type]
            hooks=self._hooks(request),
            stderr=tally.stderr.append,
            sandbox=self._sandbox_for(request),  # type: ignore[arg-type]
        )

    def _sandbox_for(self, request: AgentRequest) -> dict[str, Any] | None:
        # The sandbox starts network proxies with the agent: only where Bash may run.
        if not may_run_bash(request.allowed_tools):
            return None
        # The orchestrator's state (audit chain, leases) is not the agent's to read.
        return self.bash_sandbox.settings(request.network_domains, hidden=[str(data_dir())])

    @property
    def bash_sandbox(self) -> BashSandbox:
        if self._sandbox is None:  # probed once: it starts a process
            self._sandbox = probe_sandbox(self._sandbox_mode)
        return self._sandbox

    def _hooks(self, request: AgentRequest) -> dict[Any, list[HookMatcher]] | None:
        callbacks = self._make_hooks(request) if self._make_hooks else None
        if not callbacks:
            return None
        return {event: [HookMatcher(matcher=None, hooks=[callback])]
                for event, callback in callbacks.items()}

    def _env(self, request: AgentRequest) -> dict[str, str]:
        extra = {**self._extra_env, **request.env, AGENT_MARKER_ENV: request.marker,
                 "CLAUDE_CODE_MAX_RETRIES": str(self._cli_max_retries)}
        env = clean_agent_env(extra)
        # The SDK lays options.env over os.environ, so a variable can only be blanked;
        # the two it sets itself are left to it.
        env.update({k: "" for k in os.environ if k not in env and k not in _SDK_SETS})
        return env

    async def run(self, request: AgentRequest) -> AgentOutcome:
        """Converse in a shielded child task; on timeout or cancellation kill the tree
        first, so the SDK's shutdown finds a dead process instead of waiting on a live one.
        """
        tally, agent = _Tally(cli_retries=self._cli_max_retries), _Agent(request.marker)
        done = anyio.Event()
        shield = anyio.CancelScope(shield=True)
        result: list[AgentOutcome] = []

        async def converse() -> None:
            with shield:
                try:
                    result.append(await self._converse(request, tally, agent))
                finally:
                    done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(converse)
            try:
                with anyio.move_on_after(request.timeout_s) as deadline:
                    await done.wait()
            except anyio.get_cancelled_exc_class():
                await _stop(agent, shield, done)
                raise
            if deadline.cancelled_caught:
                await _stop(agent, shield, done)
                return tally.outcome(agent.pid, (ErrorClass.TIMEOUT, f"no answer within "
                                     f"{request.timeout_s:g} s; process tree killed"))
        return result[0]

    async def _converse(self, request: AgentRequest, tally: _Tally,
                        agent: _Agent) -> AgentOutcome:
        send, receive = anyio.create_memory_object_stream[str | None](4)
        stream = query(prompt=_prompts(request.prompt, receive),
                       options=self._options(request, tally))
        try:
            async for message in stream:
                if agent.pid is None and (pid := agent.find()) is not None \
                        and request.on_spawn:
                    request.on_spawn(pid)
                if isinstance(message, SystemMessage) and message.subtype == "api_retry":
                    _api_retry(message.data, tally, request)
                elif isinstance(message, AssistantMessage):
                    tally.replied(message)
                elif isinstance(message, ResultMessage):
                    tally.add(message)
                    follow = None
                    if not message.is_error and request.follow_up is not None:
                        follow = request.follow_up(message.result or "")
                    await send.send(follow)
            return tally.outcome(agent.pid)
        except ResultError as exc:
            return tally.outcome(agent.pid, None if tally.error else _sdk_error(exc, tally))
        except (ClaudeSDKError, OSError) as exc:
            return tally.outcome(agent.pid, _sdk_error(exc, tally))
        finally:
            send.close()
            with anyio.move_on_after(_CLOSE_BOUND_S):
                await stream.aclose()  # type: ignore[attr-defined]


@dataclass(slots=True)
class _Agent:
    marker: str
    pid: int | None = None

    def find(self) -> int | None:
        if self.pid is None:
            self.pid = find_child(self.marker)
        return self.pid


async def _stop(agent: _Agent, shield: anyio.CancelScope, done: anyio.Event) -> None:
    """Kill the agent's tree, then give the SDK a bounded time to notice and clean up."""
    pid = agent.find()
    if pid is not None:
        kill_tree(pid)
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(_CLOSE_BOUND_S):
            await done.wait()
        if not done.is_set():  # never started, or stuck: stop waiting on it
            shield.cancel()
            with anyio.move_on_after(_CLOSE_BOUND_S):
                await done.wait()


async def _prompts(first: str, more: MemoryObjectReceiveStream[str | None]
                   ) -> AsyncIterator[dict[str, Any]]:
    """The conversation's user turns: the prompt, then each follow-up until None."""
    yield _user(first)
    async with more:
        async for text in more:
            if text is None:
                return
            yield _user(text)


def _user(text: str) -> dict[str, Any]:
    return {"type": "user", "message": {"role": "user", "content": text},
            "parent_tool_use_id": None}


def _api_retry(data: Mapping[str, Any], tally: _Tally, request: AgentRequest) -> None:
    """The CLI is about to retry a failed request; for a 429/529 its delay is the reply's
    Retry-After (plus the CLI's jitter) when the reply named one. The wave hears of it now,
    not when the attempt ends, so every other agent can back off while this one waits."""
    status, delay_ms = data.get("error_status"), data.get("retry_delay_ms")
    attempt, most = data.get("attempt"), data.get("max_retries")
    if isinstance(attempt, int) and isinstance(most, int):
        tally.retrying = (attempt, most)
    if status not in (429, 529) or not isinstance(delay_ms, int | float) \
            or isinstance(delay_ms, bool) or delay_ms < 0:
        return
    tally.retry_after_s = delay_ms / 1000.0
    if request.on_rate_limit is not None:
        request.on_rate_limit(int(status), tally.retry_after_s)


def _sdk_error(exc: BaseException, tally: _Tally) -> tuple[ErrorClass, str]:
    if isinstance(exc, CLIConnectionError):
        return ErrorClass.CONFIG, _one_line(f"cannot start Claude Code: {exc}")
    if isinstance(exc, ResultError):
        text = exc.result or "; ".join(exc.errors) or str(exc)
        return classify(status=exc.api_error_status, text=text, subtype=exc.subtype), \
            _one_line(text)
    if isinstance(exc, ProcessError):
        tail = " | ".join(tally.stderr) or (exc.stderr or "")
        return ErrorClass.CRASH, _one_line(f"agent process failed (exit {exc.exit_code})"
                                           + (f": {tail}" if tail else ""))
    return ErrorClass.CRASH, _one_line(f"{type(exc).__name__}: {exc}")


def _one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
