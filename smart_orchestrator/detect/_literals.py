"""The gate literals of the secret scanners, all found in one pass over the lowered text.

Most scanners run only where a literal occurs (`-----begin`, `authorization`, `sig=`,
`api-key`, `env `). Asking `literal in text` costs a whole search of the text for each
literal absent from it, and a text holding one character outside Latin-1 is stored 4
bytes a character, where each search reads 4 times the memory: some forty such searches
were a third of the scan of a benign text. An Aho-Corasick automaton (pyahocorasick, in
C) reports every occurrence of every literal in one pass; a scanner then asks whether
its literal is there, and where.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable

import ahocorasick

__all__ = ["Literals", "windows_at"]

# Lower-case, since they are searched for in the lowered text; a scanner whose literal is
# case-sensitive confirms it on the text as written (`Literals.in_text`).
_LITERALS: frozenset[str] = frozenset({
    # _secret_context: anchored formats (the `$` marks of password hashes have their own
    # search) and the context scanners' gates.
    "q~", ":a", "|", "-us", "hooks.slack.com", "webhook.office.com", "/api/webhooks/",
    "accountkey=", "atlasv1", "_mmk", "contribsys", "sig=", "pbkdf2_sha", "{ssha", "{sha",
    ":::", "'*", "service_account", "-----begin", "://", "password", "pwd", "authorization",
    "bearer", " -u", "--user",
    # _secret_syntax: tools, flags, headers, Dockerfiles, name/value pairs.
    "machine", " -p", "\t-p", "--", " -", "\t-", "convertto-securestring", " -w", "/p",
    "net use", "/user:", "%", "--user=", "api-key", "apikey", "auth-token", "access-token",
    "private-token", "api-token", "client-secret", "env ", "arg ", "env\t", "arg\t", "setx ",
    "setx\t", "setenv ", "setenv\t", "value", "default", "</", "variable", "key=", "name=",
    # _secret_generic: the words that name a credential.
    "passwd", "passphrase", "passcode", "pass", "privkey", "secret", "token", "key", "auth",
    "api", "access", "credential", "creds", "contrase", "login", "dsn", "hmac", "mnemonic",
    "_pat", "_sk",
})


def _automaton() -> ahocorasick.Automaton:
    automaton = ahocorasick.Automaton()
    for literal in _LITERALS:
        automaton.add_word(literal, literal)
    automaton.make_automaton()
    return automaton


_AUTOMATON = _automaton()
_LITERAL_OF = operator.itemgetter(1)


class Literals:
    """Where each gate literal occurs in one lowered text (start offsets, ascending)."""

    __slots__ = ("_at", "_text")

    def __init__(self, text: str, lowered: str) -> None:
        # Grouped by literal in C (a stable sort keeps each literal's hits in text order):
        # a storm of one literal costs no Python call per occurrence.
        hits = list(_AUTOMATON.iter(lowered))
        hits.sort(key=_LITERAL_OF)
        at: dict[str, list[int]] = {}
        for literal, group in itertools.groupby(hits, _LITERAL_OF):
            back = len(literal) - 1
            at[literal] = [end - back for end, _ in group]
        self._at = at
        self._text = text

    def __contains__(self, literal: str) -> bool:
        """Whether `literal` (lower-case) occurs in the lowered text."""
        if literal not in _LITERALS:
            raise KeyError(f"{literal!r} is not a gate literal")
        return literal in self._at

    def positions(self, literal: str) -> list[int]:
        """Start offsets of `literal` in the lowered text, overlapping ones included."""
        if literal not in _LITERALS:
            raise KeyError(f"{literal!r} is not a gate literal")
        return self._at.get(literal, [])

    def in_text(self, literal: str) -> bool:
        """Whether `literal`, case as written, occurs in the text: searched for only when
        its lower-case form occurs (lowering never hides an occurrence)."""
        if literal.lower() not in self:
            return False
        # Without a letter, the lowered text holds it exactly where the text does.
        return not any(c.isascii() and c.isalpha() for c in literal) or literal in self._text


def windows_at(positions: Iterable[int], width: int, back: int, ahead: int,
               size: int) -> list[tuple[int, int]]:
    """Merged [lo, hi) spans reaching `back`/`ahead` characters around occurrences of a
    literal `width` long at `positions` (ascending) in a text `size` long."""
    spans: list[tuple[int, int]] = []
    start = end = -1
    reach = width + ahead
    # No call per occurrence: a storm of one literal costs one comparison each.
    for pos in positions:
        lo, hi = pos - back, pos + reach
        if lo < 0:
            lo = 0
        if hi > size:
            hi = size
        if start >= 0 and lo <= end:
            if hi > end:
                end = hi
        else:
            if start >= 0:
                spans.append((start, end))
            start, end = lo, hi
    if start >= 0:
        spans.append((start, end))
    return spans
