"""Policy on subagent calls: configuration, checks, admission, breakers, the engine."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..store.sqlite import SqliteStore
    from .config import PolicyConfig
    from .engine import PolicyEngine

__all__ = ["EngineFactory", "normalize_mcp_args", "owner_pid"]

# Hook payload fields that the `mcp_tool` hook passes as JSON-encoded strings.
_JSON_FIELDS = ("tool_input", "tool_response", "background_tasks")


def owner_pid() -> int:
    """The Claude Code process this hook or server belongs to: its leases die with it."""
    value = os.environ.get("CLAUDE_PID", "")
    return int(value) if value.isdigit() else os.getppid()


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


def _stat_key(path: Path) -> tuple[Any, ...]:
    # ctime and inode too: mtime and size are the caller's to set (`touch -d`).
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    return (str(path), st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_size)


def _baseline(config: PolicyConfig, project_dir: Path) -> Path:
    name = config.secrets.baseline or ".secrets.baseline"
    path = Path(name)
    return path if path.is_absolute() else project_dir / path


def _sha256_of(path: Path) -> str | None:
    import hashlib

    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    except OSError:
        return None


class EngineFactory:
    """Builds engines, reloading the policy file when it changes."""

    def __init__(self, store: SqliteStore, *, source: str, project_dir: Path | None = None,
                 **engine_kwargs: Any) -> None:
        self.store = store
        self.source = source
        self.project_dir = project_dir or Path(os.environ.get("CLAUDE_PROJECT_DIR")
                                               or os.getcwd())
        self._kwargs = engine_kwargs
        self._key: tuple[Any, ...] | None = None
        self._engine: PolicyEngine | None = None
        self._error: str | None = None
        self._baseline: Path | None = None
        self._pinned = True  # False while the store cannot give the session's pin

    def policy_file(self) -> Path:
        from .config import policy_path

        return policy_path(self.project_dir)

    def get(self, session_id: str | None = None) -> tuple[PolicyEngine, str | None]:
        """The engine of the policy in force for `session_id`, and the policy file's error
        if it is invalid.

        The file is only a proposal (`policy/trust.py`): the session's pinned policy, made
        stronger by the file where it is stronger. With an invalid file the engine runs on
        the pin (so leases are still released and outputs still scanned); callers deny new
        spawns with the error.
        """
        from .engine import PolicyEngine

        session = session_id if session_id is not None else \
            os.environ.get("CLAUDE_CODE_SESSION_ID", "")
        path = self.policy_file()
        key = (session, _stat_key(path), _stat_key(self._baseline_path()))
        if key != self._key or self._engine is None:
            config = self._resolve(path, session)
            self._engine = PolicyEngine(self.store, config, project_dir=self.project_dir,
                                        source=self.source, owner_pid=owner_pid(),
                                        **self._kwargs)
            # A pin the store could not give is asked for again on the next event.
            self._key = key if self._pinned else None
        return self._engine, self._error

    def _resolve(self, path: Path, session: str) -> PolicyConfig:
        from ..errors import ConfigError
        from .config import PolicyConfig, load_policy
        from .pinning import merge_stronger
        from .trust import note_baseline, resolve

        proposed: PolicyConfig | None
        try:
            proposed, self._error = load_policy(path), None
        except ConfigError as exc:
            proposed, self._error = None, exc.one_line()
        self._pinned = False
        try:
            config = resolve(self.store, self.project_dir, session, proposed,
                             source=self.source).config
            self._pinned = True
        except Exception as exc:  # the pin cannot be read: never fall back to the file alone
            from .engine import _log_crash

            _log_crash(exc)
            self._error = (f"the pinned policy cannot be read ({type(exc).__name__}); "
                           "subagent calls are denied until it can")
            return merge_stronger(PolicyConfig(), proposed or PolicyConfig()).config
        self._baseline = _baseline(config, self.project_dir)
        try:
            note_baseline(self.store, self.project_dir, session,
                          config.secrets.baseline_sha256, _sha256_of(self._baseline),
                          source=self.source)
        except Exception as exc:  # only the record is lost: the allowlist checks the bytes
            from .engine import _log_crash

            _log_crash(exc)
        return config

    def _baseline_path(self) -> Path:
        return self._baseline or self.project_dir / ".secrets.baseline"

    def warm(self) -> None:
        """Load the engine and the detectors now, so the first hook call is not slower."""
        from ..detect.injection import detect_injection
        from ..detect.secrets import scan_text

        self.get()
        detect_injection("warm-up")
        scan_text("warm-up")

    def decide(self, payload: dict[str, Any]) -> dict[str, Any]:
        from .engine import AGENT_TOOLS
        from .outputs import deny

        engine, error = self.get(str(payload.get("session_id") or ""))
        if error and payload.get("hook_event_name") == "PreToolUse" and \
                payload.get("tool_name") in AGENT_TOOLS:
            import contextlib

            # The store itself may be what failed; the denial stands anyway.
            with contextlib.suppress(Exception):
                engine.audit.record("policy.decision", decision="deny",
                                    reason="invalid policy file" if self._pinned else
                                    "pinned policy unreadable",
                                    session_id=str(payload.get("session_id") or ""),
                                    source=self.source)
            return deny(f"Smart Orchestrator cannot check subagent calls: {error}. Fix the "
                        "policy file; until then subagent calls are denied.")
        return engine.handle(payload)
