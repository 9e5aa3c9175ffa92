"""Latin letters written with look-alike characters, folded back one for one.

An instruction spelled with Cyrillic or Greek letters that look Latin ("іgnоrе" with a
Cyrillic і, о and е), or with compatibility forms (full-width "ｉｇｎｏｒｅ", mathematical
"𝐢𝐠𝐧𝐨𝐫𝐞", circled letters), reads the same to a model and slips past patterns written in
ASCII. Each such character is replaced by its lower-case Latin letter, one character for
one, so offsets do not move. Cyrillic and Greek look-alikes are folded only inside words
that also hold Latin letters: a word wholly in another script is that language, not a
disguise. Compatibility forms are folded wherever they stand (NFKC does the same).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["fold_confusables"]

# Cyrillic and Greek letters drawn like a Latin letter in common fonts.
_LOOKALIKES = {
    "а": "a", "в": "b", "е": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p", "с": "c",
    "т": "t", "у": "y", "х": "x", "і": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "һ": "h",
    "ԛ": "q", "ԝ": "w", "ь": "b", "ѵ": "v", "ү": "y", "ɡ": "g",
    "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p", "τ": "t",
    "υ": "u", "χ": "x", "γ": "y", "η": "n",
}
_LOOKALIKES |= {k.upper(): v for k, v in _LOOKALIKES.items() if len(k.upper()) == 1}
_LOOKALIKE_TABLE = {ord(k): v for k, v in _LOOKALIKES.items()}


def _compatibility_letters() -> dict[int, str]:
    """Characters whose NFKC form is one Latin letter: full-width, mathematical, circled."""
    table: dict[int, str] = {}
    for lo, hi in ((0x24B6, 0x24E9), (0xFF21, 0xFF5A), (0x1D400, 0x1D6A3), (0x1F130, 0x1F189)):
        for code in range(lo, hi + 1):
            folded = unicodedata.normalize("NFKC", chr(code))
            if len(folded) == 1 and folded.isascii() and folded.isalpha():
                table[code] = folded.lower()
    return table


_COMPAT_TABLE = _compatibility_letters()
_SUSPECT = frozenset(chr(c) for c in _LOOKALIKE_TABLE) | frozenset(chr(c) for c in _COMPAT_TABLE)
_LOOKALIKE_CLASS = "".join(sorted(_LOOKALIKES))
# A whole word mixing Latin letters with look-alikes. Possessive prefixes: each word start
# is tried once, in time linear in the word.
# A word holding another letter (Greek theta, a Cyrillic letter without a Latin twin) is
# another language and left alone.
_MIXED_RE = re.compile(rf"(?<!\w)(?=[a-z]++[{_LOOKALIKE_CLASS}]|[{_LOOKALIKE_CLASS}]++[a-z])"
                       rf"[a-z{_LOOKALIKE_CLASS}]++(?!\w)")
_COMPAT_RE = re.compile("[" + "".join(chr(c) for c in sorted(_COMPAT_TABLE)) + "]+")


# Look-alike characters located one by one up to this many; past it, one regex pass over
# the whole text is cheaper (text in Cyrillic or Greek is full of them).
_FIND_LIMIT = 2048
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz" + _LOOKALIKE_CLASS)
# No word is longer than this; a run longer is not prose.
_LONGEST_WORD = 64


def _mixed_words(lowered: str, suspects: list[str]) -> list[tuple[int, int]]:
    """Spans of the words mixing Latin letters with the look-alike `suspects`."""
    offsets: list[int] = []
    for c in suspects:
        at = lowered.find(c)
        while at != -1:
            offsets.append(at)
            if len(offsets) > _FIND_LIMIT:
                return [m.span() for m in _MIXED_RE.finditer(lowered)]
            at = lowered.find(c, at + 1)
    offsets.sort()
    spans: list[tuple[int, int]] = []
    for at in offsets:
        if spans and at < spans[-1][1]:
            continue
        start = at
        while start > 0 and at - start < _LONGEST_WORD and lowered[start - 1] in _WORD_CHARS:
            start -= 1
        m = _MIXED_RE.match(lowered, start)
        if m is not None:
            spans.append(m.span())
    return spans


def fold_confusables(lowered: str, extra: frozenset[str],
                     ) -> tuple[str, list[tuple[int, int]]]:
    """`lowered` (ASCII already lower-cased) with look-alike letters folded to Latin, and
    the spans that changed. `extra` is the set of its non-ASCII characters."""
    if not extra or extra.isdisjoint(_SUSPECT):
        return lowered, []
    spans = _mixed_words(lowered, sorted(extra.intersection(_LOOKALIKES)))
    pieces: list[str] = []
    pos = 0
    for lo, hi in spans:
        pieces += (lowered[pos:lo], lowered[lo:hi].translate(_LOOKALIKE_TABLE))
        pos = hi
    pieces.append(lowered[pos:])
    folded = "".join(pieces) if spans else lowered
    if any(ord(c) in _COMPAT_TABLE for c in extra):
        spans += [m.span() for m in _COMPAT_RE.finditer(folded)]
        folded = folded.translate(_COMPAT_TABLE)
        spans.sort()
    return folded, spans
