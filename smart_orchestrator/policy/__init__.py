"""Policy on subagent calls: configuration, checks, admission, breakers, the engine."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ..store.base import Store
    from .config import PolicyConfig
    from .decision import Decision
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
    objects; undo both so the engine sees the hook payload Claude Code built.
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


class _Built(NamedTuple):
    engine: PolicyEngine
    error: str | None
    pinned: bool  # False while the store cannot give the session's pin
    baseline: Path


class EngineFactory:
    """Builds engines for the policy in force, one per session and Claude Code process.

    The per-user service decides for many sessions at once, from worker threads: engines
    are kept per (session, process, policy file, baseline) key, so sessions never rebuild
    each other's engine (and lose its memory of what each main agent was given)."""

    MAX_ENGINES = 64

    def __init__(self, store: Store, *, source: str, project_dir: Path | None = None,
                 **engine_kwargs: Any) -> None:
        self.store = store
        self.source = source
        if project_dir is None:
            from ..paths import project_dir as current_project

            project_dir = current_project()
        self.project_dir = project_dir
        # The session transcripts hooks named lately: one for all the factory's engines
        # (a process deciding for several projects passes its own to each factory).
        from ..budget.live_transcripts import LiveTranscripts

        engine_kwargs.setdefault("transcripts", LiveTranscripts())
        self._kwargs = engine_kwargs
        self._lock = threading.Lock()
        self._built: dict[tuple[Any, ...], _Built] = {}
        self._baselines: dict[str, Path] = {}

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
        built = self._get(session_id)
        return built.engine, built.error

    def _get(self, session_id: str | None) -> _Built:
        from ..session import current
        from .engine import PolicyEngine

        session = session_id if session_id is not None else current().session_id
        path = self.policy_file()
        pid = owner_pid()
        with self._lock:
            baseline = self._baselines.get(session, self.project_dir / ".secrets.baseline")
        key = (session, pid, _stat_key(path), _stat_key(baseline))
        with self._lock:
            cached = self._built.get(key)
        if cached is not None:
            return cached
        config, error, pinned = self._resolve(path, session)
        built = _Built(PolicyEngine(self.store, config, project_dir=self.project_dir,
                                    source=self.source, owner_pid=pid, **self._kwargs),
                       error, pinned, _baseline(config, self.project_dir))
        with self._lock:
            self._baselines[session] = built.baseline
            # A pin the store could not give is asked for again on the next event.
            if pinned:
                self._built[key] = built
                while len(self._built) > self.MAX_ENGINES:
                    self._built.pop(next(iter(self._built)))
        return built

    def _resolve(self, path: Path, session: str) -> tuple[PolicyConfig, str | None, bool]:
        from ..errors import ConfigError
        from .config import PolicyConfig, load_policy
        from .pinning import merge_stronger
        from .trust import note_baseline, resolve

        proposed: PolicyConfig | None
        error: str | None
        try:
            proposed, error = load_policy(path), None
        except ConfigError as exc:
            proposed, error = None, exc.one_line()
        try:
            config = resolve(self.store, self.project_dir, session, proposed,
                             source=self.source).config
        except Exception as exc:  # the pin cannot be read: never fall back to the file alone
            from .engine import _log_crash

            _log_crash(exc)
            return (merge_stronger(PolicyConfig(), proposed or PolicyConfig()).config,
                    f"the pinned policy cannot be read ({type(exc).__name__}); subagent "
                    "calls are denied until it can", False)
        try:
            note_baseline(self.store, self.project_dir, session,
                          config.secrets.baseline_sha256,
                          _sha256_of(_baseline(config, self.project_dir)), source=self.source)
        except Exception as exc:  # only the record is lost: the allowlist checks the bytes
            from .engine import _log_crash

            _log_crash(exc)
        return config, error, True

    def warm(self) -> None:
        """Load the engine and the detectors now, so the first hook call is not slower."""
        from ..detect.injection import detect_injection
        from ..detect.secrets import scan_text

        self.get()
        detect_injection("warm-up")
        scan_text("warm-up")

    def decide(self, payload: dict[str, Any]) -> Decision:
        from .decision import deny, passed
        from .surfaces import GATED_TOOLS

        gated = payload.get("hook_event_name") == "PreToolUse" and \
            payload.get("tool_name") in GATED_TOOLS
        if bad := _bad_id(payload):
            # Ids are keys in the store (leases, agents): Claude Code's are plain tokens, so
            # anything else came from another caller of policy_check and is not written.
            if gated:
                return deny(f"Smart Orchestrator denied this call: its {bad} is not an id.")
            return passed(str(payload.get("hook_event_name") or ""))
        built = self._get(str(payload.get("session_id") or ""))
        if built.error and gated:
            import contextlib

            # The store itself may be what failed; the denial stands anyway.
            with contextlib.suppress(Exception):
                built.engine.audit.record(
                    "policy.decision", decision="deny",
                    reason="invalid policy file" if built.pinned else "pinned policy unreadable",
                    session_id=str(payload.get("session_id") or ""), source=self.source)
            return deny(f"Smart Orchestrator cannot check subagent calls: {built.error}. Fix "
                        "the policy file; until then subagent calls are denied.")
        return built.engine.handle(payload)


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
