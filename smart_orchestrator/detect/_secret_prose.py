"""A random token standing alone in running text: "authenticate using l70sfohjtve9pz4u0cph".

A prompt or a pasted chat names no variable and quotes no assignment; a credential there
is a word that no language has: long, with digits spread through its letters, and not
the shape of an identifier, a path, a version, a UUID or a hash. Only lines that read as
sentences are considered (words, few code marks), so code, lockfiles and data are not.
"""

from __future__ import annotations

import math
import re

from ._candidates import PRIORITY_GENERIC, Hit
from ._text import (
    dotted_names,
    looks_like_code_identifier,
    looks_placeholder,
    mostly_sequential,
    shannon_entropy,
)

__all__ = ["RULE_IDS", "scan_prose"]

RULE_IDS = frozenset({"random-token-in-prose"})

_WORD_RE = re.compile(r"(?<![\w/.])[A-Za-z][a-z]{2,14}(?=[\s,.;:!?)])")
# Parentheses and `>` are prose too (asides, quoted replies).
_CODE_MARKS = frozenset("={};[]<$\\|&")
_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
_HEX_RE = re.compile(r"[0-9a-fA-F-]+")
_WORDY_RE = re.compile(r"[A-Za-z][a-z]{3,}")


def _prose_line(line: str) -> bool:
    """Four or more words and almost no code punctuation."""
    if sum(c in _CODE_MARKS for c in line) > 2:
        return False
    return len(_WORD_RE.findall(line)) >= 4


_NO_DIGITS = str.maketrans("", "", "0123456789")
_NO_LETTERS = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_VOWELS = str.maketrans("", "", "aeiou")
_THREE_DIGITS_RE = re.compile(r"\d\D*\d\D*\d")


def _random_token(token: str) -> bool:
    if _THREE_DIGITS_RE.search(token) is None:
        return False  # most long words of code and prose, rejected in one call
    size = len(token)
    digits = size - len(token.translate(_NO_DIGITS))
    letters = size - len(token.translate(_NO_LETTERS))
    if digits < 3 or letters < 6 or digits > 0.7 * size:
        return False
    if _UUID_RE.fullmatch(token) or _HEX_RE.fullmatch(token):
        return False
    if "/" in token and "+" not in token and "=" not in token:
        return False  # a path (`VENDORS/MICSFT/PC/CP865.TXT`), not base64
    if looks_placeholder(token) or mostly_sequential(token) or looks_like_code_identifier(token):
        return False
    if dotted_names(token):
        return False
    # Not words with numbers in them: long letter runs that read (a third vowels or more;
    # random letters hold about a fifth).
    runs = "".join(_WORDY_RE.findall(token)).lower()
    if len(runs) > 0.6 * letters and len(runs) - len(runs.translate(_NO_VOWELS)) >= 0.3 * len(
            runs):
        return False
    return shannon_entropy(token) >= min(3.8, math.log2(size) - 0.7)


_EDGE = "`'\"()<>.,;:!?"
_TOKEN_CHARS_RE = re.compile(r"[A-Za-z0-9_\-+/=~.]{19,199}[A-Za-z0-9_\-+/=~]")


def scan_prose(text: str) -> list[Hit]:
    hits: list[Hit] = []
    lines: dict[int, bool] = {}
    verdicts: dict[str, bool] = {}
    pos = 0
    # str.split runs in C; only the few words of 20 characters or more reach Python.
    for word in [w for w in text.split() if len(w) >= 20]:
        at = text.find(word, pos)
        pos = at + len(word)
        token = word.strip(_EDGE)
        ok = verdicts.get(token)
        if ok is None:  # a repeated word is judged once
            ok = verdicts[token] = bool(_TOKEN_CHARS_RE.fullmatch(token)) and _random_token(token)
        if not ok:
            continue
        start = at + word.find(token)
        prose = lines.get(text.rfind("\n", 0, start) + 1)
        if prose is None:
            prose = lines[text.rfind("\n", 0, start) + 1] = _reads_as_prose(text, start, token)
        if prose:
            hits.append(Hit("random-token-in-prose", start, start + len(token), "medium",
                            PRIORITY_GENERIC, (token,)))
    return hits


def _reads_as_prose(text: str, start: int, token: str) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    end = text.find("\n", start)
    line = text[line_start:end if end != -1 else len(text)]
    # A token alone on its line (a quoted reply `> token`): judge the next line.
    if len(line) - len(token) < 12 and end != -1:
        after = text.find("\n", end + 1)
        line += " " + text[end + 1:after if after != -1 else len(text)]
    return _prose_line(line.replace(token, ""))
