"""Credentials a model disguised: encoded, reversed, spelled out, or cut into pieces.

`scan_text` finds credentials as they are written. A subagent told to withhold one can
still hand it over base64- or hex-encoded, reversed, ROT13'd, in full-width letters, with
invisible characters or spaces between its characters, or cut into pieces (within one
answer, or across answers: see `FragmentMemory`). Each view below undoes one such
disguise in linear time and is scanned again. A hit names the view; where it is, is not
kept: a disguised credential withholds the whole text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

from .secrets import Allowlist, scan_text

__all__ = ["DisguisedSecret", "FragmentMemory", "fragments", "scan_disguised"]

_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?:(?:\\x|0x)?[0-9a-fA-F]{2}[\s:,-]?){12,}")
_URLENC = re.compile(r"(?:%[0-9a-fA-F]{2}){8,}")
# Single characters with the same kind of separator between them: "A K I A ...".
_SPELLED = re.compile(r"(?<![A-Za-z0-9+/=])(?:[A-Za-z0-9+/=_-][\s.,;:|*_-]{1,3}){8,}"
                      r"[A-Za-z0-9+/=_-]")
_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
                        "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0]")
# Pieces that could be part of a credential: not plain lowercase words.
_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{2,}")
_PIECE = re.compile(r"[A-Z0-9]{2,}|.*[0-9].*|.+[A-Z].*|.*[_+/=-].*")


# Random-looking tokens in prose: reversing, rotating or gluing pieces of any text makes
# such tokens, so these rules say nothing about a view.
_BY_SHAPE_ALONE = frozenset({"random-token-in-prose", "random-token", "secret-in-prose"})


class DisguisedSecret(NamedTuple):
    rule_id: str   # e.g. "base64:aws-access-key-id"
    severity: str


def scan_disguised(text: str, *, earlier: str = "",
                   allowlist: Allowlist | None = None) -> list[DisguisedSecret]:
    """Credentials found only once a disguise is undone; `earlier` is the run of pieces
    from answers already delivered (see `FragmentMemory`)."""
    found: dict[str, DisguisedSecret] = {}
    for view, variant in _views(text, earlier):
        for hit in scan_text(variant, allowlist=allowlist):
            if hit.rule_id in _BY_SHAPE_ALONE:
                continue
            rule = f"{view}:{hit.rule_id}"
            found.setdefault(rule, DisguisedSecret(rule, hit.severity))
    return list(found.values())


def fragments(text: str) -> list[str]:
    """The pieces of `text` that could be part of a credential, in order."""
    return [t for t in _TOKEN.findall(text) if _PIECE.fullmatch(t)]


class FragmentMemory:
    """The last pieces of what each session's main agent was given, kept in memory only
    (never written anywhere): a credential cut across two answers is found in the
    second one."""

    def __init__(self, per_session: int = 64, sessions: int = 256) -> None:
        self._per_session = per_session
        self._sessions = sessions
        self._pieces: dict[str, deque[str]] = {}

    def earlier(self, session: str) -> str:
        return "".join(self._pieces.get(session, ()))

    def remember(self, session: str, text: str) -> None:
        pieces = self._pieces.pop(session, None) or deque(maxlen=self._per_session)
        pieces.extend(fragments(text))
        self._pieces[session] = pieces  # most recent last: the oldest session goes first
        while len(self._pieces) > self._sessions:
            del self._pieces[next(iter(self._pieces))]


def _views(text: str, earlier: str) -> Iterator[tuple[str, str]]:
    visible = _INVISIBLE.sub("", text)
    if visible != text:
        yield "invisible", visible
    folded = unicodedata.normalize("NFKC", visible)
    if folded != visible:
        yield "unicode", folded
    yield "reversed", folded[::-1]
    yield "rot13", codecs.encode(folded, "rot13")
    pieces = "".join(fragments(folded))
    yield "pieces", f"{earlier}{pieces}\n{pieces}{earlier}"
    spelled = [m.group() for m in _SPELLED.finditer(folded)]
    yield "spelled", "\n".join([re.sub(r"[^A-Za-z0-9+/=_-]", "", s) for s in spelled]
                               + [re.sub(r"[^A-Za-z0-9]", "", s) for s in spelled])
    once = list(_decoded(folded, _B64, _b64))
    # Twice encoded is as cheap to undo as once.
    yield "base64", "\n".join(once + [v for t in once for v in _decoded(t, _B64, _b64)])
    yield "hex", "\n".join(_decoded(folded, _HEX, _hex))
    yield "url", "\n".join(_decoded(folded, _URLENC, urllib.parse.unquote))


def _decoded(text: str, pattern: re.Pattern[str], decode: object) -> Iterator[str]:
    assert callable(decode)
    # No cap on the number of tokens (padding with decoys would hide the last one): the
    # decoded text is never longer than the text, so the work stays linear.
    for match in pattern.finditer(text):
        try:
            value = decode(match.group())
        except (ValueError, UnicodeDecodeError, binascii.Error):
            continue
        if isinstance(value, str) and value and value != match.group():
            yield value


def _b64(token: str) -> str:
    token = token.rstrip("=")
    raw = base64.b64decode(token.replace("-", "+").replace("_", "/") + "=" * (-len(token) % 4))
    return _printable(raw)


def _hex(token: str) -> str:
    return _printable(bytes.fromhex(re.sub(r"\\x|0x|[\s:,-]", "", token)))


def _printable(raw: bytes) -> str:
    text = raw.decode("utf-8")
    if sum(c.isprintable() or c in "\n\t" for c in text) < 0.9 * len(text):
        raise ValueError("not text")
    return text
