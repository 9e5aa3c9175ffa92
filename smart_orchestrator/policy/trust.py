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
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..audit import AuditLog
from .config import SECTIONS, PolicyConfig, config_digest, config_from_values, config_values
from .pinning import merge_stronger, weaker_keys

if TYPE_CHECKING:
    from ..store.base import Store
    from ..store.repos import TrustRepo

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


def trusted(store: Store, project_dir: Path) -> TrustState | None:
    return _trust_row(store.trust, project_key(project_dir))


def latest_pin(store: Store, project_dir: Path) -> tuple[str, PolicyConfig, str] | None:
    """The newest session's (id, pinned policy, digest) for this project."""
    row = store.trust.latest_pin(project_key(project_dir))
    return (row[0], _row_config(row[1]), row[2]) if row else None


def resolve(store: Store, project_dir: Path, session_id: str,
            proposed: PolicyConfig | None, *, source: str) -> Resolution:
    """Pin on a session's first event, then merge the file in (stronger keys only)."""
    project = project_key(project_dir)
    audit, repo = AuditLog(store), store.trust
    with store.transaction():
        trust = _trust_row(repo, project)
        if trust is None:
            if proposed is None:  # an invalid file is not trusted, even on first use
                return _fallback(proposed)
            trust = _trust_first_use(repo, audit, project, proposed, source)
        pin = _pin_row(repo, session_id) if session_id else trust.config
        if pin is None:
            pin = trust.config
            digest = config_digest(pin)
            repo.add_pin(session_id, project, json.dumps(config_values(pin)), digest,
                         _now_us())
            audit.record("policy.pinned", session_id=session_id, project=project,
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
                repo.first_time(session_id, f"policy:{proposal_digest}", _now_us()):
            audit.record("policy.changed", session_id=session_id, project=project,
                            before=config_digest(pin), after=proposal_digest,
                            in_force=config_digest(merged.config),
                            weakened=list(merged.weakened),
                            strengthened=list(merged.strengthened), source=source)
        if merged.strengthened:
            _raise(repo, project, session_id, trust, merged.config, proposal)
    sources = in_force_sources(merged.config, proposed, f"pinned:{trust.origin}")
    return Resolution(merged.config._replace(sources=sources), config_digest(merged.config),
                      proposal_digest, merged.weakened, trust.origin)


def note_baseline(store: Store, project_dir: Path, session_id: str,
                  confirmed: str | None, found: str | None, *, source: str) -> None:
    """A baseline whose bytes the user did not confirm allowlists nothing: say so once."""
    if found is None or found == confirmed:
        return
    with store.transaction():
        if store.trust.first_time(session_id, f"baseline:{found}", _now_us()):
            AuditLog(store).record("policy.baseline_ignored", session_id=session_id,
                                   project=project_key(project_dir), sha256=found,
                                   confirmed=confirmed, source=source)


def accept(store: Store, project_dir: Path, proposed: PolicyConfig,
           baseline_sha256: str | None, *, channel: str) -> tuple[str, str | None]:
    """Make `proposed` (and the baseline with these bytes) the project's trusted policy
    for new sessions. Returns (new digest, previous digest)."""
    project = project_key(project_dir)
    config = proposed._replace(secrets=proposed.secrets._replace(
        baseline_sha256=baseline_sha256), sources=None)
    digest = config_digest(config)
    with store.transaction():
        old = _trust_row(store.trust, project)
        store.trust.set_trusted(project, json.dumps(config_values(config)), digest,
                                "accepted", _now_us())
        AuditLog(store).record(
            "policy.accepted", project=project, before=old.digest if old else None,
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
def _trust_row(repo: TrustRepo, project: str) -> TrustState | None:
    row = repo.trusted(project)
    return TrustState(_row_config(row.config), row.digest, row.origin, row.updated_us) \
        if row else None


def _pin_row(repo: TrustRepo, session_id: str) -> PolicyConfig | None:
    row = repo.pin(session_id)
    return _row_config(row) if row else None


def _trust_first_use(repo: TrustRepo, audit: AuditLog, project: str,
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
    repo.set_trusted(project, json.dumps(config_values(config)), digest, "first-use", now)
    audit.record("policy.trusted", project=project, digest=digest, first_use=True,
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


def _raise(repo: TrustRepo, project: str, session_id: str, trust: TrustState,
           merged: PolicyConfig, proposal: PolicyConfig) -> None:
    """A strengthening binds the rest of this session and, being safe, new ones too."""
    if session_id:
        repo.set_pin(session_id, json.dumps(config_values(merged)), config_digest(merged))
    raised = merge_stronger(trust.config, proposal._replace(secrets=proposal.secrets._replace(
        baseline_sha256=trust.config.secrets.baseline_sha256)))
    if raised.strengthened:
        repo.set_trusted(project, json.dumps(config_values(raised.config)),
                         config_digest(raised.config), trust.origin, _now_us())


def _fallback(proposed: PolicyConfig | None) -> Resolution:
    config = PolicyConfig()
    return Resolution(config._replace(sources=_all(config, "default")), config_digest(config),
                      None, (), "none")


def _all(config: PolicyConfig, label: str) -> dict[str, str]:
    return {f"{section}.{name}": label for section in SECTIONS
            for name in getattr(config, section)._fields}
