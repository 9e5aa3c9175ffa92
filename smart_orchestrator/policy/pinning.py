"""Which of two policies is stronger, key by key, and the stronger-of merge.

A session's policy is fixed when it starts; a later file may only strengthen it. For
every key this module knows which direction enforces more, so a mixed change applies its
stronger keys and keeps the pinned value of its weaker ones. A value this version does
not understand (a forged cache, a damaged store row) ranks below every valid one: it can
never win over a pinned value.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from .config import SECTIONS, PolicyConfig

__all__ = ["KEY_KINDS", "Merge", "merge_stronger", "weaker_keys"]

_MODE = {"off": 0, "warn": 1, "enforce": 2}
_RANKS: dict[str, dict[Any, int]] = {
    "mode": _MODE,
    "on_error": {"allow": 0, "deny": 1},
    # Denying from a lower severity up denies more.
    "severity": {"critical": 0, "high": 1, "medium": 2, "low": 3},
    "action": {"redact": 0, "deny": 1},
    "bool": {False: 0, True: 1},
    "veil": {"off": 0, "auto": 1, "all": 2},
    "preset": {"permissive": 0, "default": 1, "strict": 2},
}

# section.key -> how to compare. "lower": a smaller value enforces more (a limit);
# "higher": a larger one does; "superset": removing an item weakens; "fixed": any change
# weakens (a different baseline file is a different allowlist).
KEY_KINDS: dict[str, str] = {
    "preset": "preset",
    "prompt.max_chars": "lower", "prompt.min_chars": "higher",
    "prompt.required_fields": "superset", "prompt.injection": "mode",
    "prompt.injection_deny_severity": "severity",
    "secrets.action": "action", "secrets.baseline": "fixed",
    "secrets.baseline_sha256": "fixed",
    "admission.max_in_flight_session": "lower", "admission.max_in_flight_machine": "lower",
    "admission.min_available_memory_mb": "higher", "admission.max_load_percent": "lower",
    "admission.spawns_per_minute": "lower", "admission.max_depth": "lower",
    # A longer wait turns denials into admissions (never past the limits).
    "admission.wait_timeout_s": "lower",
    # A lease counts against the limits until it ends: a shorter backstop frees slots of
    # agents that are still running.
    "admission.lease_ttl_s": "higher",
    "breaker.failure_threshold": "lower",
    # Failures are counted over the window: a shorter one trips less often.
    "breaker.window_s": "higher", "breaker.cooldown_s": "higher",
    "output.secrets": "mode", "output.injection": "mode",
    "tools.deny_credential_reads": "bool", "tools.deny_state_reads": "bool",
    "tools.veil": "veil",
    # A cap of None (no cap) is junk to "lower": the weakest value.
    "budget.session_usd": "lower", "budget.day_usd": "lower",
    "budget.project_usd": "lower", "budget.team_usd": "lower",
    "budget.session_mode": "mode", "budget.day_mode": "mode",
    "budget.project_mode": "mode", "budget.team_mode": "mode",
    # A larger estimate reserves more, so caps deny sooner.
    "budget.default_estimate_tokens": "higher",
    "budget.confirm_above_usd": "lower",
    "budget.rate_limit": "mode", "budget.max_backoff_s": "higher",
}
for _section in SECTIONS:
    KEY_KINDS.setdefault(f"{_section}.mode", "mode")
    KEY_KINDS.setdefault(f"{_section}.on_error", "on_error")


class Merge(NamedTuple):
    config: PolicyConfig             # the stronger of the two, key by key
    weakened: tuple[str, ...]        # keys where the proposal is weaker (pinned value kept)
    strengthened: tuple[str, ...]    # keys where the proposal is stronger (applied)


def _compare(kind: str, pinned: Any, proposed: Any) -> int:
    """-1 if `proposed` is weaker than `pinned`, 1 if stronger, 0 if neither."""
    if _same(pinned, proposed):
        return 0
    if kind == "fixed":
        return -1
    if kind == "superset":
        old, new = _items(pinned), _items(proposed)
        return -1 if not old <= new else (1 if new > old else 0)
    if kind in ("lower", "higher"):
        sign = -1.0 if kind == "lower" else 1.0
        a, b = _oriented(pinned, sign), _oriented(proposed, sign)
        return (b > a) - (b < a)
    ranks = _RANKS[kind]
    a, b = _rank(ranks, pinned), _rank(ranks, proposed)
    return (b > a) - (b < a)


def _oriented(value: Any, sign: float) -> float:
    """Larger means stronger, whatever the key's direction; junk is the weakest."""
    return sign * float(value) if _valid_number(value) else -math.inf


def _valid_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and not math.isnan(value))


def _rank(ranks: dict[Any, int], value: Any) -> int:
    try:
        return ranks.get(value, -1) if not isinstance(value, (int, float)) or \
            isinstance(value, bool) else -1
    except TypeError:  # an unhashable value from a damaged row
        return -1


def _items(value: Any) -> frozenset[str]:
    if isinstance(value, (list, tuple)):
        return frozenset(v for v in value if isinstance(v, str))
    return frozenset()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return tuple(a) == tuple(b)
    return (type(a) is type(b) and a == b) or (
        _valid_number(a) and _valid_number(b) and float(a) == float(b))


def _stronger_value(kind: str, pinned: Any, proposed: Any) -> tuple[Any, int]:
    verdict = _compare(kind, pinned, proposed)
    if kind == "superset" and verdict < 0:
        # Items the proposal adds still apply; the ones it removes stay.
        merged = tuple(pinned) + tuple(v for v in _items(proposed) - _items(pinned))
        return merged, verdict
    return (proposed if verdict > 0 else pinned), verdict


def merge_stronger(pinned: PolicyConfig, proposed: PolicyConfig) -> Merge:
    """Every key at the stronger of the two values; which keys each side won."""
    weakened: list[str] = []
    strengthened: list[str] = []
    preset, verdict = _stronger_value("preset", pinned.preset, proposed.preset)
    _note("preset", verdict, weakened, strengthened)
    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        old, new = getattr(pinned, section), getattr(proposed, section)
        values: dict[str, Any] = {}
        for name in cls._fields:
            key = f"{section}.{name}"
            value, verdict = _stronger_value(KEY_KINDS.get(key, "fixed"),
                                             getattr(old, name), getattr(new, name))
            _note(key, verdict, weakened, strengthened)
            if key == "prompt.required_fields" and verdict < 0 and \
                    _items(getattr(new, name)) - _items(getattr(old, name)):
                strengthened.append(key)  # a mixed change: some added, some removed
            values[name] = value
        sections[section] = cls(**values)
    config = PolicyConfig(preset=preset, sources=None, **sections)
    return Merge(config, tuple(weakened), tuple(strengthened))


def weaker_keys(reference: PolicyConfig, proposed: PolicyConfig) -> tuple[str, ...]:
    return merge_stronger(reference, proposed).weakened


def _note(key: str, verdict: int, weakened: list[str], strengthened: list[str]) -> None:
    if verdict < 0:
        weakened.append(key)
    elif verdict > 0:
        strengthened.append(key)
