"""Small text utilities shared by the detectors: entropy, placeholders, line index."""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections import Counter

__all__ = [
    "LineIndex",
    "anchor_windows",
    "ascii_lower",
    "dotted_names",
    "looks_like_code_identifier",
    "looks_placeholder",
    "mostly_sequential",
    "name_parts",
    "shannon_entropy",
]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """Lower-case `text` keeping every offset valid (str.lower may change length)."""
    lowered = text.lower()
    return lowered if len(lowered) == len(text) else text.translate(_ASCII_LOWER)


# c * log2(c) for small counts, so entropy needs no per-character logarithm.
_C_LOG_C = [0.0] + [c * math.log2(c) for c in range(1, 513)]


def shannon_entropy(value: str) -> float:
    """Bits per character of `value`'s own character distribution."""
    total = len(value)
    if not total:
        return 0.0
    table = _C_LOG_C
    acc = 0.0
    for n in Counter(value).values():
        acc += table[n] if n < 513 else n * math.log2(n)
    return math.log2(total) - acc / total


# Words and marks people put where a real credential would go.
_PLACEHOLDER_RE = re.compile(
    r"xxxx|\*\*\*|\.\.\.|<[^>]*>|\$\{|\$\(|\{\{|%\(|%[sd]\b|\bnone\b|\bnull\b"
    r"|example|changeme|change_me|changeit|placeholder|your[_-]?(?:api|secret|token|key|pass|own)"
    r"|dummy|sample|redacted|insert|replace|_here|here_|\bhere\b|here$|todo|###"
    r"|lorem|foobar|secret_?key_?here|put_?your",
)
_TEMPLATE_RE = re.compile(
    r"^(?:\$[A-Za-z_{(]|%[A-Za-z_]+%$|@[A-Za-z_]+@$|\{[\w .|-]*\}$|#\{|\[[A-Z_ ]+\]$)"
)
_WEAK_VALUES = frozenset({
    "password", "passwd", "pass", "pwd", "secret", "token", "changeme", "changeit", "admin",
    "test", "testing", "default", "username", "user", "root", "guest", "qwerty", "letmein",
    "apikey", "api_key", "mypassword", "yourpassword", "string", "true", "false", "empty",
    "undefined", "required", "optional", "hunter2", "abc123", "123456", "12345678", "token_here",
})


def looks_placeholder(value: str) -> bool:
    """True for template variables, masks, doc placeholders and near-constant strings."""
    lowered = value.lower()
    if not value or lowered in _WEAK_VALUES:
        return True
    if _TEMPLATE_RE.search(value) or _PLACEHOLDER_RE.search(lowered):
        return True
    counts = Counter(value)
    distinct = len(counts)
    if distinct <= 3 or (len(value) >= 16 and distinct <= 5):
        return True
    # One character dominating (e.g. "AKIA0000000000000001") is a mask, not a key.
    return len(value) >= 12 and max(counts.values()) > len(value) * 0.5


_ALPHABETS = ("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def mostly_sequential(value: str, threshold: float = 0.5, longest: int = 12) -> bool:
    """True for alphabets like "abcdef...xyz": a long ascending run covering most of `value`."""
    # Digit runs stop at 10 characters, so a run of `longest` letters must be present.
    window = longest
    if not any(a[i:i + window] in value for a in _ALPHABETS for i in range(27 - window)):
        return False
    covered = 0
    run = 1
    for prev, cur in itertools.pairwise(value):
        if ord(cur) == ord(prev) + 1 and cur.isalnum():
            run += 1
            continue
        if run >= 4:
            covered += run
        run = 1
    if run >= 4:
        covered += run
    return covered >= len(value) * threshold


_CODE_IDENT_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_NAME_PART_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+")
_SEPARATORS_RE = re.compile(r"[.:/-]")


def name_parts(value: str) -> list[str]:
    """Words of a snake_case or camelCase name (digits stay attached to their word)."""
    return _NAME_PART_RE.findall(value.replace("_", " "))


def looks_like_code_identifier(value: str) -> bool:
    """`chain_Anvil2_Key`, `getUserName`, `gss_krb5_rfc1964_keydata`: words, not noise."""
    if not _CODE_IDENT_RE.fullmatch(value):
        return False
    if value.count("_") >= 2 and value.islower():
        return all(2 <= len(p) <= 15 for p in value.split("_") if p)
    if sum(c.isdigit() for c in value) > 2:
        return False
    words = name_parts(value)
    return len(words) >= 2 and all(len(w) >= 3 or (w.isupper() and len(w) >= 2) for w in words)


def dotted_names(value: str) -> bool:
    """`jetbrains.mps.v8_elimination` or `io.netty:netty-all`: segments that are names."""
    parts = _SEPARATORS_RE.split(value)
    return len(parts) >= 2 and all(
        _CODE_IDENT_RE.fullmatch(p) and sum(c.isdigit() for c in p) <= 2 for p in parts)


def anchor_windows(haystack: str, literal: str, back: int, ahead: int,
                   limit: int | None = None) -> list[tuple[int, int]]:
    """Merged [lo, hi) spans reaching `back`/`ahead` characters around each `literal`.

    Past `limit` spans the whole text is returned as one span: scanning it once is then
    cheaper than visiting every occurrence.
    """
    spans: list[tuple[int, int]] = []
    size, width = len(haystack), len(literal)
    find, rfind = haystack.find, haystack.rfind
    pos = find(literal)
    while pos != -1:
        lo, hi = max(0, pos - back), min(size, pos + width + ahead)
        # Jump to the last occurrence inside the window instead of visiting each one.
        while (last := rfind(literal, pos + 1, hi)) != -1 and last + width + ahead > hi < size:
            pos, hi = last, min(size, last + width + ahead)
        if spans and lo <= spans[-1][1]:
            spans[-1] = (spans[-1][0], hi)
        else:
            spans.append((lo, hi))
            if limit is not None and len(spans) > limit:
                return [(0, size)]
        pos = find(literal, max(pos + 1, hi - width + 1))
    return spans


class LineIndex:
    """Maps character offsets to 1-based line numbers and line spans."""

    __slots__ = ("_starts", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        starts = [0]
        find = text.find
        pos = find("\n")
        while pos != -1:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        self._starts = starts

    def line_of(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset)

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its newline; empty when out of range."""
        if line < 1 or line > len(self._starts):
            return ""
        start = self._starts[line - 1]
        end = self._starts[line] - 1 if line < len(self._starts) else len(self._text)
        return self._text[start:end]
