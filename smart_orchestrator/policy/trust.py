"""The policy in force: the project's trusted policy, each session's pin, and changes.

The policy file is a proposal. A session pins the project's trusted policy when its first
event is decided (`policy.pinned`); from then on a file may only strengthen it: stronger
keys apply at once (and raise the pin and the trusted policy), weaker ones keep the
pinned value and are recorded once per distinct file as `policy.changed`. A weakening
reaches new sessions only after the user confirms it in a terminal (`policy accept`,
`policy.accepted`). A project seen for the first time trusts its file as it is
(`policy.trusted` with `first_use`), the one point where a file is believed unconfirmed,
unless settings files move the policy or the state (then no further than the defaults).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..audit import AuditLog
from .config import SECTIONS, PolicyConfig, config_digest, config_from_values, config_values
from .pinning import merge_stronger, weaker_keys

if TYPE_CHECKING:
    from ..store.sqlite import SqliteStore

__all__ = ["Resolution", "TrustState", "accept", "in_force_sources", "latest_pin",
           "project_key", "resolve", "settings_relocating_state", "trusted"]


class TrustState(NamedTuple):
    config: PolicyConfig
    digest: str
    origin: str          # first-use | accepted
    updated_us: int


class Resolution(NamedTuple):
    config: PolicyConfig            # in force, with `sources`
    pinned_digest: str
    proposed_digest: str | None     # the file's policy; None when it is invalid
    weakened: tuple[str, ...]       # the file's keys not honoured
    trust_origin: str


def project_key(project_dir: Path) -> str:
    return os.path.realpath(project_dir)


def _now_us() -> int:
    return time.time_ns() // 1000


def _row_config(text: str) -> PolicyConfig:
    return config_from_values(json.loads(text))


def trusted(store: SqliteStore, project_dir: Path) -> TrustState | None:
    rows = store.query("SELECT config, digest, origin, updated_us FROM policy_trust "
                       "WHERE project = ?", (project_key(project_dir),))
    return TrustState(_row_config(rows[0][0]), *rows[0][1:]) if rows else None


def latest_pin(store: SqliteStore, project_dir: Path) -> tuple[str, PolicyConfig, str] | None:
    """The newest session's (id, pinned policy, digest) for this project."""
    rows = store.query("SELECT session_id, config, digest FROM policy_pins WHERE project = ? "
                       "ORDER BY pinned_us DESC, rowid DESC LIMIT 1",
                       (project_key(project_dir),))
    return (rows[0][0], _row_config(rows[0][1]), rows[0][2]) if rows else None


def resolve(store: SqliteStore, project_dir: Path, session_id: str,
            proposed: PolicyConfig | None, *, source: str) -> Resolution:
    """Pin on a session's first event, then merge the file in (stronger keys only)."""
    project = project_key(project_dir)
    audit = AuditLog(store)
    with store.transaction() as conn:
        trust = _trust_row(conn, project)
        if trust is None:
            if proposed is None:  # an invalid file is not trusted, even on first use
                return _fallback(proposed)
            trust = _trust_first_use(conn, audit, project, proposed, source)
        pin = _pin_row(conn, session_id) if session_id else trust.config
        if pin is None:
            pin = trust.config
            digest = config_digest(pin)
            conn.execute("INSERT INTO policy_pins VALUES (?, ?, ?, ?, ?)",
                         (session_id, project, json.dumps(config_values(pin)), digest,
                          _now_us()))
            audit.record_in(conn, "policy.pinned", session_id=session_id, project=project,
                            digest=digest, trust=trust.origin,
                            baseline_sha256=pin.secrets.baseline_sha256, source=source)
        if proposed is None:
            return Resolution(pin._replace(sources=_all(pin, f"pinned:{trust.origin}")),
                              config_digest(pin), None, (), trust.origin)
        proposal = proposed._replace(secrets=proposed.secrets._replace(
            baseline_sha256=pin.secrets.baseline_sha256))
        merged = merge_stronger(pin, proposal)
        proposal_digest = config_digest(proposal)
        if (merged.weakened or merged.strengthened) and \
                _first_time(conn, session_id, f"policy:{proposal_digest}"):
            audit.record_in(conn, "policy.changed", session_id=session_id, project=project,
                            before=config_digest(pin), after=proposal_digest,
                            in_force=config_digest(merged.config),
                            weakened=list(merged.weakened),
                            strengthened=list(merged.strengthened), source=source)
        if merged.strengthened:
            _raise(conn, project, session_id, trust, merged.config, proposal)
    sources = in_force_sources(merged.config, proposed, f"pinned:{trust.origin}")
    return Resolution(merged.config._replace(sources=sources), config_digest(merged.config),
                      proposal_digest, merged.weakened, trust.origin)


def note_baseline(store: SqliteStore, project_dir: Path, session_id: str,
                  confirmed: str | None, found: str | None, *, source: str) -> None:
    """A baseline whose bytes the user did not confirm allowlists nothing: say so once."""
    if found is None or found == confirmed:
        return
    with store.transaction() as conn:
        if _first_time(conn, session_id, f"baseline:{found}"):
            AuditLog(store).record_in(conn, "policy.baseline_ignored", session_id=session_id,
                                      project=project_key(project_dir), sha256=found,
                                      confirmed=confirmed, source=source)


def accept(store: SqliteStore, project_dir: Path, proposed: PolicyConfig,
           baseline_sha256: str | None, *, channel: str) -> tuple[str, str | None]:
    """Make `proposed` (and the baseline with these bytes) the project's trusted policy
    for new sessions. Returns (new digest, previous digest)."""
    project = project_key(project_dir)
    config = proposed._replace(secrets=proposed.secrets._replace(
        baseline_sha256=baseline_sha256), sources=None)
    digest = config_digest(config)
    with store.transaction() as conn:
        old = _trust_row(conn, project)
        conn.execute("INSERT INTO policy_trust VALUES (?, ?, ?, 'accepted', ?) "
                     "ON CONFLICT (project) DO UPDATE SET config = excluded.config, "
                     "digest = excluded.digest, origin = 'accepted', "
                     "updated_us = excluded.updated_us",
                     (project, json.dumps(config_values(config)), digest, _now_us()))
        AuditLog(store).record_in(
            conn, "policy.accepted", project=project, before=old.digest if old else None,
            after=digest, weakened=list(weaker_keys(old.config if old else PolicyConfig(),
                                                    config)),
            baseline_sha256=baseline_sha256, channel=channel)
    return digest, (old.digest if old else None)


def in_force_sources(config: PolicyConfig, proposed: PolicyConfig | None,
                     pinned_label: str) -> dict[str, str]:
    """Per key: the file's own origin where its value is in force, else the pin's."""
    file_sources = (proposed.sources if proposed is not None else None) or {}
    out: dict[str, str] = {}
    for section in SECTIONS:
        mine, theirs = getattr(config, section), getattr(proposed, section, None)
        for name in mine._fields:
            key = f"{section}.{name}"
            if key == "secrets.baseline_sha256":
                out[key] = "accepted" if mine.baseline_sha256 else "default"
            elif theirs is not None and getattr(theirs, name) == getattr(mine, name):
                out[key] = file_sources.get(key, "default")
            else:
                out[key] = pinned_label
    return out


# -- rows ----------------------------------------------------------------------------------
def _trust_row(conn: sqlite3.Connection, project: str) -> TrustState | None:
    row = conn.execute("SELECT config, digest, origin, updated_us FROM policy_trust "
                       "WHERE project = ?", (project,)).fetchone()
    return TrustState(_row_config(row[0]), *row[1:]) if row else None


def _pin_row(conn: sqlite3.Connection, session_id: str) -> PolicyConfig | None:
    row = conn.execute("SELECT config FROM policy_pins WHERE session_id = ?",
                       (session_id,)).fetchone()
    return _row_config(row[0]) if row else None


def _trust_first_use(conn: sqlite3.Connection, audit: AuditLog, project: str,
                     proposed: PolicyConfig, source: str) -> TrustState:
    config = proposed._replace(secrets=proposed.secrets._replace(baseline_sha256=None),
                               sources=None)
    weaker = weaker_keys(PolicyConfig(), config)
    relocated = settings_relocating_state(Path(project))
    if relocated and weaker:
        # Settings anyone could have written moved our state or policy: this "first use"
        # may be a store the model made fresh to be trusted in. The defaults are the floor.
        config = merge_stronger(PolicyConfig(), config).config
    digest, now = config_digest(config), _now_us()
    conn.execute("INSERT INTO policy_trust VALUES (?, ?, ?, 'first-use', ?)",
                 (project, json.dumps(config_values(config)), digest, now))
    audit.record_in(conn, "policy.trusted", project=project, digest=digest, first_use=True,
                    weaker_than_defaults=list(weaker), relocated_by=relocated,
                    clamped=bool(relocated and weaker), source=source)
    return TrustState(config, digest, "first-use", now)


# Variables that move where the policy or the state is read from.
_RELOCATING = ("SMART_ORCHESTRATOR_", "CLAUDE_PLUGIN_DATA", "CLAUDE_PROJECT_DIR")


def settings_relocating_state(project_dir: Path) -> list[str]:
    """Settings files (project and user) whose `env` moves the policy or the state."""
    found: list[str] = []
    # The working directory too: Claude Code starts hooks there, and a settings file that
    # moves CLAUDE_PROJECT_DIR is not in the folder it moves it to.
    places = dict.fromkeys((project_dir, Path.cwd()))
    files = [base / ".claude" / name for base in places
             for name in ("settings.json", "settings.local.json")]
    for path in (*files, Path.home() / ".claude" / "settings.json"):
        try:
            env = json.loads(path.read_text(encoding="utf-8")).get("env")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(env, dict):
            found += [f"{path.name}:{key}" for key in env
                      if isinstance(key, str) and key.startswith(_RELOCATING)]
    return found


def _raise(conn: sqlite3.Connection, project: str, session_id: str, trust: TrustState,
           merged: PolicyConfig, proposal: PolicyConfig) -> None:
    """A strengthening binds the rest of this session and, being safe, new ones too."""
    if session_id:
        conn.execute("UPDATE policy_pins SET config = ?, digest = ? WHERE session_id = ?",
                     (json.dumps(config_values(merged)), config_digest(merged), session_id))
    raised = merge_stronger(trust.config, proposal._replace(secrets=proposal.secrets._replace(
        baseline_sha256=trust.config.secrets.baseline_sha256)))
    if raised.strengthened:
        conn.execute("UPDATE policy_trust SET config = ?, digest = ?, updated_us = ? "
                     "WHERE project = ?", (json.dumps(config_values(raised.config)),
                                           config_digest(raised.config), _now_us(), project))


def _first_time(conn: sqlite3.Connection, session_id: str, change: str) -> bool:
    cur = conn.execute("INSERT OR IGNORE INTO policy_changes VALUES (?, ?, ?)",
                       (session_id, change, _now_us()))
    return cur.rowcount == 1


def _fallback(proposed: PolicyConfig | None) -> Resolution:
    config = PolicyConfig()
    return Resolution(config._replace(sources=_all(config, "default")), config_digest(config),
                      None, (), "none")


def _all(config: PolicyConfig, label: str) -> dict[str, str]:
    return {f"{section}.{name}": label for section in SECTIONS
            for name in getattr(config, section)._fields}
