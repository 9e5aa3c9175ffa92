"""Policy on subagent calls: configuration, checks, admission, breakers, the engine."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store.sqlite import SqliteStore
    from .config import PolicyConfig
    from .engine import PolicyEngine

__all__ = ["EngineFactory", "normalize_mcp_args", "owner_pid"]

# Hook payload fields that the `mcp_tool` hook passes as JSON-encoded strings.
_JSON_FIELDS = ("tool_input", "tool_response", "background_tasks")


def owner_pid() -> int | None:
    """The Claude Code process this hook or server works for: its leases die with it."""
    from ..session import current

    return current().claude_pid


def normalize_mcp_args(args: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a hook payload from an `mcp_tool` hook's substituted input.

    Claude Code substitutes `${path}` with "" when the path is missing and JSON-encodes
    objects; undo both so the engine sees what a command hook would read on stdin.
    """
    import json

    payload: dict[str, Any] = {}
    for key, value in args.items():
        if value in ("", None):
            continue
        if key == "event":
            key = "hook_event_name"
        if key in _JSON_FIELDS and isinstance(value, str):
            try:
                value = json.loads(value)
            except (ValueError, RecursionError):  # the checks then deny it as malformed
                value = {"_unparsed": True}
        elif key == "stop_hook_active":
            value = value in (True, "true", "True", "1")
        payload[key] = value
    return payload


class EngineFactory:
    """Builds engines, reloading the policy file when it changes."""

    def __init__(self, store: SqliteStore, *, source: str, project_dir: Path | None = None,
                 **engine_kwargs: Any) -> None:
        self.store = store
        self.source = source
        if project_dir is None:
            from ..paths import project_dir as current_project

            project_dir = current_project()
        self.project_dir = project_dir
        self._kwargs = engine_kwargs
        self._key: tuple[Any, ...] | None = None
        self._engine: PolicyEngine | None = None
        self._error: str | None = None

    def policy_file(self) -> Path:
        from .config import policy_path

        return policy_path(self.project_dir)

    def get(self) -> tuple[PolicyEngine, str | None]:
        """The engine, and the policy file's error if it is invalid.

        With an invalid file the engine runs on the built-in defaults (so leases are still
        released and outputs still scanned); callers deny new spawns with the error.
        """
        from .config import PolicyConfig, load_policy
        from .engine import PolicyEngine

        path = self.policy_file()
        # Engines are per Claude Code process too: the service decides for many sessions,
        # and each one's leases must die with its own process.
        pid = owner_pid()
        try:
            st = path.stat()
            key: tuple[Any, ...] = (str(path), st.st_mtime_ns, st.st_size, pid)
        except OSError:
            key = (str(path), None, None, pid)
        if key != self._key or self._engine is None:
            from ..errors import ConfigError

            config: PolicyConfig
            try:
                config, self._error = load_policy(path), None
            except ConfigError as exc:
                config, self._error = PolicyConfig(), exc.one_line()
            self._engine = PolicyEngine(self.store, config, project_dir=self.project_dir,
                                        source=self.source, owner_pid=pid,
                                        **self._kwargs)
            self._key = key
        return self._engine, self._error

    def warm(self) -> None:
        """Load the engine and the detectors now, so the first hook call is not slower."""
        from ..detect.injection import detect_injection
        from ..detect.secrets import scan_text

        self.get()
        detect_injection("warm-up")
        scan_text("warm-up")

    def decide(self, payload: dict[str, Any]) -> dict[str, Any]:
        from .outputs import deny
        from .surfaces import GATED_TOOLS

        if bad := _bad_id(payload):
            # Ids are keys in the store (leases, agents): Claude Code's are plain tokens, so
            # anything else came from another caller of policy_check and is not written.
            if payload.get("hook_event_name") == "PreToolUse" and \
                    payload.get("tool_name") in GATED_TOOLS:
                return deny(f"Smart Orchestrator denied this call: its {bad} is not an id.")
            return {}
        engine, error = self.get()
        if error and payload.get("hook_event_name") == "PreToolUse" and \
                payload.get("tool_name") in GATED_TOOLS:
            engine.audit.record("policy.decision", decision="deny", reason="invalid policy file",
                                session_id=str(payload.get("session_id") or ""),
                                source=self.source)
            return deny(f"Smart Orchestrator cannot check subagent calls: {error}. Fix the "
                        "policy file; until then subagent calls are denied.")
        return engine.handle(payload)


def _bad_id(payload: dict[str, Any]) -> str | None:
    import re

    from ..scrub import secret_rules

    for name in ("session_id", "tool_use_id", "agent_id"):
        value = payload.get(name)
        if value in (None, ""):
            continue
        if not (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9_.:-]{1,200}", value)):
            return name
        # Every suffix on its own line: a credential glued to other characters is found too.
        if secret_rules("\n".join(value[i:] for i in range(len(value)))):
            return name
    return None
