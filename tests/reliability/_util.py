"""Shared helpers of the reliability suites."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

_QUIET = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
          HealthCheck.data_too_large, HealthCheck.large_base_example,
          HealthCheck.filter_too_much]


def examples(n: int) -> settings:
    """Hypothesis settings for a suite: `n` examples, no deadline (a 2-core machine shared
    with other work has slow moments that are not failures)."""
    return settings(max_examples=n, deadline=None, suppress_health_check=_QUIET,
                    print_blob=True)


@contextlib.contextmanager
def scoped_env(**values: str | None) -> Iterator[None]:
    """Set (or, with None, unset) environment variables for a module-scoped fixture, which
    pytest's function-scoped `monkeypatch` cannot serve; restored afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        _set_env(values)
        yield
    finally:
        _set_env(saved)


def _set_env(values: dict[str, str | None]) -> None:
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# Keys Claude Code reads from a hook's stdout.
HOOK_OUTPUT_KEYS = frozenset({"continue", "stopReason", "suppressOutput", "systemMessage",
                              "decision", "reason", "hookSpecificOutput"})
DECISIONS = frozenset({"allow", "deny", "ask", "defer"})


def assert_hook_output(stdout: str, *, event: str, must_deny: bool = False) -> dict[str, Any]:
    """`stdout` is empty or one JSON object Claude Code accepts; returns it (or {})."""
    if not stdout.strip():
        assert not must_deny, "a PreToolUse(Agent) that must be denied got no output"
        return {}
    out = json.loads(stdout)
    assert isinstance(out, dict), stdout[:200]
    assert set(out) <= HOOK_OUTPUT_KEYS, sorted(out)
    specific = out.get("hookSpecificOutput")
    if specific is not None:
        assert isinstance(specific, dict)
        assert isinstance(specific.get("hookEventName"), str)
        if "permissionDecision" in specific:
            assert specific["permissionDecision"] in DECISIONS
            reason = specific.get("permissionDecisionReason")
            assert isinstance(reason, str) and reason.strip()
            assert "Traceback" not in reason
    if out.get("decision") is not None:
        assert out["decision"] == "block" and isinstance(out.get("reason"), str)
    if must_deny:
        assert denied(out), out
    return out


def denied(out: dict[str, Any]) -> bool:
    specific = out.get("hookSpecificOutput") or {}
    return isinstance(specific, dict) and specific.get("permissionDecision") == "deny"


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([PYTHON, "-m", "smart_orchestrator.cli", *args], input=stdin,
                          capture_output=True, timeout=timeout, env=full, cwd=REPO_ROOT,
                          check=False)


def one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip() and "Traceback" not in text


def mcp_hook_args(event: str, payload: Any) -> dict[str, str]:
    """The `policy_check` arguments Claude Code's `${...}` substitution makes of `payload`
    for a hook registered on `event`: strings as they are, objects and arrays as JSON,
    other values as text, missing ones empty."""
    from mcp_server.policy_tools import HOOK_FIELDS

    fields = payload if isinstance(payload, dict) else {}
    args = {"event": event}
    for name in HOOK_FIELDS[1:]:
        value = fields.get(name)
        args[name] = ("" if value is None else value if isinstance(value, str)
                      else str(value).lower() if isinstance(value, bool)
                      else json.dumps(value) if isinstance(value, (dict, list)) else str(value))
    return args


def hook_answer(event: str, payload: Any) -> str:
    """What the service answers a hook's `policy_check` call for this event: the one
    decider, in this process, on the data folder the environment names."""
    from mcp_server.policy_tools import decide_hook
    from mcp_server.state import AppState
    from smart_orchestrator.errors import StoreError
    from smart_orchestrator.store import open_store

    try:  # as the service's lifespan opens it: a broken store is a reason, not a crash
        state = AppState(open_store())
    except StoreError as exc:
        state = AppState(None, exc.one_line())
    try:
        text, refused = decide_hook(state, mcp_hook_args(event, payload))
    finally:
        if state.store is not None:
            state.store.close()
    assert not refused, text
    return text


# A hook event answered by the service's decision in a fresh process (for resource limits).
HOOK_SNIPPET = ("import json, sys; from tests.reliability._util import hook_answer; "
                "print(hook_answer(sys.argv[1], json.loads(sys.stdin.read())))")


def run_hook(event: str, payload: bytes, *, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    full = dict(os.environ)
    full.update(env or {})
    full["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run([PYTHON, "-c", HOOK_SNIPPET, event], input=payload,
                          capture_output=True, timeout=timeout, env=full, cwd=REPO_ROOT,
                          check=False)
