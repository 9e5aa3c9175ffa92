"""The shape of an injection rule, shared by the rule tables."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Rule"]


class Rule(NamedTuple):
    rule_id: str
    severity: str
    description: str
    anchors: tuple[str, ...]
    regex: str
    # Skip a match preceded by a negation ("never reveal your password").
    negatable: bool = False
    # Every match starts at an anchor: try the pattern at anchor offsets only.
    at_anchor: bool = False
    # How far a match may extend on either side of an anchor, in characters.
    reach: int = 120
    # A pattern that must end where the match starts (checked on the preceding text), so
    # the main pattern can start at a rare word rather than a common one.
    before: str | None = None
