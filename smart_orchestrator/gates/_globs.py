"""Path globs over repository-relative paths: `*` stays in one folder, `**` spans folders."""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence

__all__ = ["glob_regex", "matches_any"]


@functools.lru_cache(maxsize=512)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """`src/**/*.py` matches `src/a.py` and `src/x/y/a.py`; a pattern without `/` matches
    the file name in any folder, as in .gitignore."""
    pattern = pattern.strip().lstrip("/")
    if "/" not in pattern.rstrip("/"):
        pattern = "**/" + pattern
    if pattern.endswith("/"):
        pattern += "**"
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[" and (end := pattern.find("]", i + 1)) > i + 1:
            body = pattern[i + 1:end].replace("\\", "\\\\")
            out.append("[^" + body[1:] + "]" if body[0] == "!" else "[" + body + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z", re.S)


def matches_any(path: str, include: Sequence[str], exclude: Sequence[str] = ()) -> bool:
    return (any(glob_regex(p).match(path) for p in include)
            and not any(glob_regex(p).match(path) for p in exclude))
