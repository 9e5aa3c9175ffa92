"""Where a rule's pattern matches: at anchor offsets, or anywhere inside windows.

A storm of one anchor (a hostile input repeating it) would cost a match attempt from
Python at each occurrence; there the same few contexts recur, so an attempt's verdict
is remembered by the text it can read.
"""

from __future__ import annotations

import re
import re._parser as re_parser
from collections.abc import Iterator

__all__ = ["matches"]

# Anchors closer than this on average, and at least _DENSE_MIN of them, make a storm (a
# hostile input repeating an anchor): the same few contexts recur, so the verdict of a
# match attempt is remembered by the text it can read.
_DENSE_GAP = 64
_DENSE_MIN = 256
# What a match attempt may read in a storm: its pattern's longest match (capped) and this
# much past it for lookaheads and word boundaries.
_READ_CAP = 1024
_READ_PAST = 64


def _dense(offsets: list[int] | tuple[()]) -> bool:
    if len(offsets) < _DENSE_MIN or not isinstance(offsets, list):
        return False
    return offsets[-1] - offsets[0] < len(offsets) * _DENSE_GAP


def _reads(pattern: re.Pattern[str]) -> int:
    """How far past its start a match attempt of `pattern` is allowed to read in a storm."""
    reach = _READS.get(pattern.pattern)
    if reach is None:
        longest = re_parser.parse(pattern.pattern).getwidth()[1]
        reach = _READS[pattern.pattern] = min(longest, _READ_CAP) + _READ_PAST
    return reach


_READS: dict[str, int] = {}
# Lookbehinds and word boundaries read this far before a match's start.
_READ_BEFORE = 16


def matches(pattern: re.Pattern[str], lowered: str, offsets: list[int] | tuple[()],
             windows: list[tuple[int, int]] | tuple[()]) -> Iterator[tuple[int, int]]:
    """(start, end) of the matches of `pattern` at `offsets`, then inside `windows`."""
    last_end = -1
    dense = _dense(offsets)
    reach = _reads(pattern) if dense else 0
    seen: dict[str, int] = {}  # in a storm: end offset relative to the start, or -1
    # The previous attempt's text and verdict: comparing with it costs a memcmp, a dict
    # lookup a hash of the whole key, and in a storm the next context is mostly the same.
    prev_key, prev_rel = "", -1
    size = len(lowered)
    for at in offsets:
        if at < last_end:
            continue
        if dense and at >= _READ_BEFORE:
            # The attempt reads no further than `reach`, so its verdict is that of the
            # same text wherever it recurs.
            hi = at + reach  # a slice or an end past the text stops at its end
            key = lowered[at - _READ_BEFORE:hi]
            if key == prev_key:
                rel = prev_rel
            else:
                cached = seen.get(key)
                if cached is None:
                    m = pattern.match(lowered, at, hi)
                    cached = seen[key] = -1 if m is None else m.end() - at
                rel = cached
                prev_key, prev_rel = key, rel
            if rel >= 0:
                last_end = at + rel
                yield at, last_end
            continue
        m = pattern.match(lowered, at)
        if m is not None:
            last_end = m.end()
            yield at, last_end
    for lo, hi in windows:
        for m in pattern.finditer(lowered, lo, hi):
            if m.end() == hi < size:
                continue  # the window may have cut this match short
            yield m.span()
