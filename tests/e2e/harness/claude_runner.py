"""Run the Claude Code CLI bundled with claude-agent-sdk, offline, and parse its stream-json."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ClaudeRun",
    "ClaudeTimeoutError",
    "find_claude_bin",
    "offline_env",
    "run_claude",
    "sdk_env",
    "validate_plugin",
]

_SCRUBBED_PREFIXES = ("CLAUDE", "ANTHROPIC")
# How long to collect output after the process group was killed on timeout.
_GRACE = 5.0


def find_claude_bin() -> Path | None:
    """The `claude` executable shipped inside the installed claude_agent_sdk wheel, if any."""
    try:
        import claude_agent_sdk
    except ImportError:
        return None
    path = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _offline_vars(model_url: str, home: Path, tmpdir: Path) -> dict[str, str]:
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": model_url,
        "ANTHROPIC_API_KEY": "test-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "MCP_CONNECTION_NONBLOCKING": "false",
        "CLAUDE_CODE_TMPDIR": str(tmpdir),
    }


def offline_env(
    *, model_url: str, home: Path, tmpdir: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The CLI's environment: inherited minus CLAUDE*/ANTHROPIC*, pointed at `model_url`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env.update(_offline_vars(model_url, home, tmpdir))
    env.update(extra or {})
    return env


def sdk_env(*, model_url: str, home: Path, tmpdir: Path) -> dict[str, str]:
    """`ClaudeAgentOptions.env` for a claude-agent-sdk `query()` against `model_url`.

    The SDK merges this over `os.environ`, so inherited CLAUDE*/ANTHROPIC* variables cannot
    be removed, only blanked.
    """
    env = {k: "" for k in os.environ if k.startswith(_SCRUBBED_PREFIXES)}
    env.update(_offline_vars(model_url, home, tmpdir))
    return env


class ClaudeTimeoutError(AssertionError):
    """The CLI outlived its timeout; `run` holds what it printed before being killed."""

    def __init__(self, run: ClaudeRun) -> None:
        super().__init__(
            f"claude did not finish within {run.timeout} s (process group killed)\n"
            f"--- last stdout ---\n{run.stdout[-3000:]}\n--- last stderr ---\n{run.stderr[-3000:]}"
        )
        self.run = run


@dataclass(slots=True)
class ClaudeRun:
    """One finished `claude -p` run and its parsed stream-json messages."""

    args: list[str]
    returncode: int | None
    stdout: str
    stderr: str
    wall_time: float
    timeout: float
    # Also the process group id: the CLI runs in a session of its own.
    pid: int
    timed_out: bool = False
    messages: list[dict[str, Any]] = field(default_factory=list)
    unparsed_lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for line in self.stdout.splitlines():
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self.unparsed_lines.append(line)
                continue
            if isinstance(message, dict):
                self.messages.append(message)
            else:
                self.unparsed_lines.append(line)

    # ---- the init message --------------------------------------------------------------

    @property
    def init(self) -> dict[str, Any]:
        for message in self.messages:
            if message.get("type") == "system" and message.get("subtype") == "init":
                return message
        raise AssertionError(f"no system/init message in the output\n{self._tail()}")

    @property
    def tools(self) -> list[str]:
        return list(self.init.get("tools", []))

    @property
    def mcp_servers(self) -> list[dict[str, Any]]:
        return list(self.init.get("mcp_servers", []))

    @property
    def plugins(self) -> list[dict[str, Any]]:
        return list(self.init.get("plugins", []))

    @property
    def plugin_errors(self) -> list[dict[str, Any]]:
        return list(self.init.get("plugin_errors", []))

    @property
    def slash_commands(self) -> list[str]:
        return list(self.init.get("slash_commands", []))

    @property
    def skills(self) -> list[str]:
        return list(self.init.get("skills", []))

    @property
    def agents(self) -> list[str]:
        return list(self.init.get("agents", []))

    def mcp_server_status(self, name: str) -> str | None:
        """Status of an MCP server by full name (`plugin:p:s`) or its last segment."""
        for server in self.mcp_servers:
            full = server.get("name", "")
            if name in (full, full.rsplit(":", 1)[-1]):
                return str(server.get("status"))
        return None

    def assert_plugin_loaded(self, name: str) -> dict[str, Any]:
        """The init entry of plugin `name`; a dropped plugin fails with its plugin_errors."""
        errors = self.plugin_errors
        for plugin in self.plugins:
            if plugin.get("name") != name:
                continue
            own = [e for e in errors if e.get("plugin") == name or e.get("path") in (
                plugin.get("path"), str(Path(str(plugin.get("path"))).resolve()))]
            if own:
                raise AssertionError(f"plugin {name!r} loaded with errors:\n{_fmt(own)}")
            return plugin
        loaded = [p.get("name") for p in self.plugins]
        raise AssertionError(
            f"plugin {name!r} was not loaded (loaded: {loaded})\n"
            f"plugin_errors:\n{_fmt(errors) if errors else '  (none)'}"
        )

    # ---- hooks and result ----------------------------------------------------------------

    def hook_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """`hook_started`/`hook_response` system messages, optionally for one hook event."""
        return [
            m for m in self.messages
            if m.get("type") == "system"
            and m.get("subtype") in ("hook_started", "hook_response")
            and (event is None or m.get("hook_event") == event)
        ]

    def hook_responses(self, event: str | None = None) -> list[dict[str, Any]]:
        return [m for m in self.hook_events(event) if m.get("subtype") == "hook_response"]

    @property
    def api_retries(self) -> list[dict[str, Any]]:
        """`system/api_retry` messages: one per retried model request."""
        return [m for m in self.messages
                if m.get("type") == "system" and m.get("subtype") == "api_retry"]

    @property
    def results(self) -> list[dict[str, Any]]:
        """Every `result` message: background subagents can end a run with more than one."""
        return [m for m in self.messages if m.get("type") == "result"]

    @property
    def result(self) -> dict[str, Any]:
        """The last `result` message."""
        if results := self.results:
            return results[-1]
        raise AssertionError(f"no result message in the output\n{self._tail()}")

    @property
    def result_text(self) -> str:
        return str(self.result.get("result", ""))

    @property
    def is_error(self) -> bool:
        return bool(self.result.get("is_error"))

    @property
    def permission_denials(self) -> list[dict[str, Any]]:
        return list(self.result.get("permission_denials", []))

    def assert_success(self, *, allow_denials: bool = False) -> None:
        """rc 0 and a non-error result; also no permission denials unless `allow_denials`.

        Denials fail by default because a denied tool (an MCP tool not allowed in `-p` mode,
        a hook deny) still ends with rc 0.
        """
        result = self.result
        denied = self.permission_denials and not allow_denials
        if self.returncode != 0 or result.get("is_error") or denied:
            raise AssertionError(
                f"claude run failed: rc={self.returncode} subtype={result.get('subtype')} "
                f"is_error={result.get('is_error')} denials={self.permission_denials}\n"
                f"result: {result.get('result')!r}\n{self._tail()}"
            )

    def _tail(self) -> str:
        return (f"--- stdout tail ---\n{self.stdout[-2000:]}\n"
                f"--- stderr tail ---\n{self.stderr[-2000:]}")


def _fmt(errors: Iterable[dict[str, Any]]) -> str:
    return "\n".join(f"  [{e.get('plugin')}] {e.get('message')} ({e.get('path')})" for e in errors)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _run(
    args: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout: float
) -> tuple[int, int | None, str, str, float, bool]:
    """Run to completion or `timeout`: (pid, rc, stdout, stderr, wall time, timed out)."""
    started = time.monotonic()
    # A session of its own: on timeout the whole tree (hooks, MCP servers) dies together.
    proc = subprocess.Popen(
        list(args), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The CLI may have exited while a child of it still holds the pipes open.
        timed_out = proc.poll() is None
        _kill_group(proc)
        try:
            stdout, stderr = proc.communicate(timeout=_GRACE)
        except subprocess.TimeoutExpired:  # a process that left the group holds the pipes
            proc.kill()
            stdout, stderr = "", ""
    else:
        timed_out = False
        _kill_group(proc)  # leftovers the CLI did not reap
    wall = time.monotonic() - started
    return proc.pid, proc.wait(), stdout, stderr, wall, timed_out


def run_claude(
    prompt: str,
    *,
    model_url: str,
    cwd: Path,
    plugin_dir: Path | None = None,
    home: Path | None = None,
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
    allowed_tools: Sequence[str] = (),
    max_turns: int | None = None,
    claude_bin: Path | None = None,
    tmpdir: Path | None = None,
    hook_events: bool = True,
) -> ClaudeRun:
    """Run `claude -p PROMPT` against `model_url`; raise ClaudeTimeoutError past `timeout`.

    `home` and `tmpdir` default to fresh directories removed afterwards; `env` is applied
    last, over the offline variables. `hook_events=False` leaves out
    `--include-hook-events` (the Agent SDK's default), as a benchmark of what users pay does.
    """
    binary = claude_bin or find_claude_bin()
    if binary is None:
        raise FileNotFoundError("claude_agent_sdk/_bundled/claude is not installed")
    args = [str(binary), "-p", prompt, "--output-format", "stream-json", "--verbose",
            *(["--include-hook-events"] if hook_events else [])]
    if plugin_dir is not None:
        args += ["--plugin-dir", str(plugin_dir)]
    if allowed_tools:
        args += ["--allowedTools", ",".join(allowed_tools)]
    if max_turns is not None:
        args += ["--max-turns", str(max_turns)]
    args += list(extra_args)
    with contextlib.ExitStack() as stack:
        home = home or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cc-home-")))
        tmpdir = tmpdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cc-tmp-")))
        for directory in (cwd, home, tmpdir):
            directory.mkdir(parents=True, exist_ok=True)
        run_env = offline_env(model_url=model_url, home=home, tmpdir=tmpdir, extra=env)
        pid, rc, stdout, stderr, wall, timed_out = _run(args, cwd=cwd, env=run_env,
                                                         timeout=timeout)
    run = ClaudeRun(args, rc, stdout, stderr, wall, timeout, pid, timed_out)
    if timed_out:
        raise ClaudeTimeoutError(run)
    return run


def validate_plugin(
    plugin_dir: Path, *, strict: bool = False, claude_bin: Path | None = None,
    timeout: float = 60,
) -> tuple[int | None, str]:
    """`claude plugin validate DIR`: (returncode, stdout + stderr)."""
    binary = claude_bin or find_claude_bin()
    if binary is None:
        raise FileNotFoundError("claude_agent_sdk/_bundled/claude is not installed")
    args = [str(binary), "plugin", "validate", str(plugin_dir), *(["--strict"] if strict else [])]
    with tempfile.TemporaryDirectory(prefix="claude-validate-") as scratch:
        root = Path(scratch)
        env = offline_env(model_url="http://127.0.0.1:9", home=root, tmpdir=root)
        _, rc, stdout, stderr, _, timed_out = _run(args, cwd=plugin_dir, env=env, timeout=timeout)
    if timed_out:
        raise AssertionError(f"claude plugin validate did not finish within {timeout} s")
    return rc, stdout + stderr
