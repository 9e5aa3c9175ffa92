"""One normalised view of a text for both detectors, with a map back to the original.

A credential or an instruction can be written so that a pattern on the raw text misses
it: ANSI-coloured, with zero-width or Unicode tag characters inside, as JSON `\\u` or
`\\x` escapes, HTML entities or percent-encoding, base64 or hex of the whole token,
continued over a backslash-newline, split over two lines, or cut into concatenated
string literals (`"sk-ant-" + "api03..."`, `'a' 'b'`, Lua `..`, PHP `.`).

`normalise` undoes these in a fixed sequence of passes. Each pass is one regex split
(the work per match stays inside the regex engine where the replacement is constant) or,
for base64 and hex, a check of the words `str.split` finds 20 characters or longer; it
never lengthens the text (every decoding maps a run of characters to fewer), and keeps
the boundaries of what it changed, so a span of the view maps back to the span of the
original it came from (`View.original_span`): redaction then covers the original bytes,
escapes and all. Past 4,096 runs of invisible characters the map is kept per block of 256
characters. The view is scanned besides the original, never instead of it.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import codecs
import contextlib
import html
import itertools
import re
import urllib.parse
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["View", "joined_windows", "normalise", "place", "view_windows"]

# Zero-width and other invisible format characters and Unicode tags, which a reader never
# sees inside a token; ANSI/OSC escapes, also as written in source (`\033[`, `\e[`).
_INVISIBLE_RE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
                           "\u202a-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0"
                           "\U000e0000-\U000e007f]+")
_ANSI_RES = (
    ("\x1b", re.compile(r"\x1b(?:\[[0-9;?]{0,32}[ -/]{0,4}[@-~]|\][^\x07\x1b\n]{0,256}"
                        r"(?:\x07|\x1b\\)|[@-Z\\-_])")),
    ("\\", re.compile(r"\\(?:033|x1[bB]|u001[bB]|e)\[[0-9;?]{0,32}[ -/]{0,4}[@-~]")),
)

# Escapes in runs, so that a long escaped string costs one decode call; each pattern
# starts with a literal, which the regex engine finds at memchr speed.
_ESC = r"\\(?:u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|U[0-9a-fA-F]{8})"
_JSON_ESC_RE = re.compile(_ESC + f"(?:{_ESC}){{0,4095}}")
_ENT = r"&(?:#[0-9]{1,7};?|#[xX][0-9a-fA-F]{1,6};?|[A-Za-z][A-Za-z0-9]{1,31};)"
_ENTITY_RE = re.compile(_ENT + f"(?:{_ENT}){{0,4095}}")
_PERCENT_RE = re.compile(r"%[0-9a-fA-F]{2}(?:%[0-9a-fA-F]{2}){0,4095}")

# `"abc" + "def"`, `'abc' 'def'`, `"a" .. "b"`, `'a' . 'b'`, `"a" & "b"`, `'a' || 'b'`,
# also over one line break (`"abc"\n    "def"` inside parentheses).
_CONCAT_OP = (r"[ \t]{0,8}(?:\+|\.\.|\.|&|\|\|)?[ \t]{0,8}"
              r"(?:\\?\r?\n[ \t]{0,40}(?:\+|\.\.|\.|&|\|\|)?[ \t]{0,8})?")
# Only where both sides of the junction are token characters: a credential cut in pieces,
# not the everyday implicit concatenation of sentences. A piece ending in an escape
# (`'word\\n' 'Next'`) is text: those made a thousand joins in 5 MB of the standard library.
_CONCAT_RES = tuple(
    re.compile(rf"""{q}(?<=[A-Za-z0-9_+/=\-]{q})(?<!\\.{q}){_CONCAT_OP}{q}(?=[A-Za-z0-9_+/=\-])""")
    for q in "\"'")
# A backslash continuation, and a long token broken at a line end and carried on at the
# start of the next line (a wrapped terminal, an e-mail body, a quoted `> ` reply).
_TOKEN_CHAR = r"[A-Za-z0-9_+/=\-]"
_CONTINUATION_RE = re.compile(r"\\\r?\n[ \t]{0,40}")
# A wrapped line carries on at the margin or after quoting marks (`> `, `> > `); an
# indented line carries on a long token only (20+ characters before the break): code
# indents its next statement after a line that ends in a name.
_WRAPPED_RE = re.compile(rf"\n(?:(?<={_TOKEN_CHAR}{{20}}\n)[ \t>]{{0,8}}"
                         rf"|(?<={_TOKEN_CHAR}{{12}}\n)(?:[ \t]?>){{0,3}}[ \t]?)"
                         rf"(?={_TOKEN_CHAR}{{4}})")

# A class run (no look-behind): the engine's fastest shape for a pattern with no literal.
_BASE64_RE = re.compile(r"[A-Za-z0-9+/_\-]{20,4096}={0,2}")
_HEX_RE = re.compile(r"[0-9a-fA-F]{20,4096}")


class _Layer(NamedTuple):
    """Piece boundaries of one pass: even pieces copied, odd pieces rewritten."""

    orig_starts: list[int]
    norm_starts: list[int]
    orig_size: int
    norm_size: int

    def back_start(self, pos: int) -> int:
        i = bisect.bisect_right(self.norm_starts, pos) - 1
        if i % 2 == 0:
            return self.orig_starts[i] + pos - self.norm_starts[i]
        return self.orig_starts[i]

    def back_end(self, pos: int) -> int:
        if pos <= 0:
            return 0
        i = bisect.bisect_right(self.norm_starts, pos - 1) - 1
        if i % 2 == 0:
            return self.orig_starts[i] + pos - self.norm_starts[i]
        return self.orig_starts[i + 1] if i + 1 < len(self.orig_starts) else self.orig_size

    def forward(self, pos: int) -> int:
        i = bisect.bisect_right(self.orig_starts, pos) - 1
        if i % 2 == 0:
            return self.norm_starts[i] + pos - self.orig_starts[i]
        return self.norm_starts[i]

    def changes(self) -> list[tuple[int, int]]:
        """[start, end) in this pass's output of every rewritten piece."""
        ends = self.norm_starts[2::2]
        return list(zip(self.norm_starts[1::2], ends, strict=True))


class View(NamedTuple):
    """The normalised text and how its offsets lead back to the original."""

    text: str
    layers: tuple[_Layer, ...]
    original_size: int

    @property
    def changed(self) -> bool:
        return bool(self.layers)

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that `text[start:end]` was made from."""
        if end <= start:
            for layer in reversed(self.layers):
                start = end = layer.back_start(start)
            return start, end
        for layer in reversed(self.layers):
            start, end = layer.back_start(start), layer.back_end(end)
        return start, end

    def change_count(self) -> int:
        return sum(len(layer.norm_starts) // 2 for layer in self.layers)

    def changed_spans(self) -> list[tuple[int, int]]:
        """Spans of the view that some pass rewrote (a deletion is an empty span)."""
        spans: list[tuple[int, int]] = []
        for i, layer in enumerate(self.layers):
            for start, end in layer.changes():
                for later in self.layers[i + 1:]:
                    start, end = later.forward(start), later.forward(end)
                spans.append((start, end))
        spans.sort()
        return spans


_Decoder = Callable[[str], str | None]


def _apply(text: str, pattern: re.Pattern[str], decode: _Decoder | None,
           layers: list[_Layer]) -> str:
    """One pass: every match replaced by `decode(match)` ("" when `decode` is None);
    a decoder answering None or something no shorter keeps the match as it is."""
    # One capturing group around the whole pattern: split then keeps every match.
    pieces = _captured(pattern).split(text)
    if len(pieces) == 1:
        return text
    found = pieces[1::2]
    orig_lens = list(map(len, pieces))
    if decode is None:
        # Deletions: the view is the copied pieces, and every match has length 0 in it.
        result = "".join(pieces[::2])
        norm_lens = orig_lens[:]
        norm_lens[1::2] = [0] * len(found)
    else:
        out = [_shorter(decode, m) for m in found]
        pieces[1::2] = out
        norm_lens = list(map(len, pieces))
        if any(o is m for o, m in zip(out, found, strict=True)):
            # Matches left as they were are copies: fold them into their neighbours.
            orig_lens, norm_lens = _fold_unchanged(orig_lens, norm_lens, out, found)
            if len(orig_lens) == 1:
                return text
        result = "".join(pieces)
    orig_starts = list(itertools.accumulate(orig_lens, initial=0))[:-1]
    norm_starts = list(itertools.accumulate(norm_lens, initial=0))[:-1]
    layers.append(_Layer(orig_starts, norm_starts, len(text), len(result)))
    return result


def _fold_unchanged(orig_lens: list[int], norm_lens: list[int], out: list[str],
                    found: list[str]) -> tuple[list[int], list[int]]:
    folded_orig = [orig_lens[0]]
    folded_norm = [norm_lens[0]]
    for k, (o, m) in enumerate(zip(out, found, strict=True)):
        i = 2 * k + 1
        if o is m:
            folded_orig[-1] += orig_lens[i] + orig_lens[i + 1]
            folded_norm[-1] += norm_lens[i] + norm_lens[i + 1]
        else:
            folded_orig += (orig_lens[i], orig_lens[i + 1])
            folded_norm += (norm_lens[i], norm_lens[i + 1])
    return folded_orig, folded_norm


_CAPTURED: dict[re.Pattern[str], re.Pattern[str]] = {}


def _captured(pattern: re.Pattern[str]) -> re.Pattern[str]:
    wrapped = _CAPTURED.get(pattern)
    if wrapped is None:
        assert pattern.groups == 0, "passes use non-capturing groups only"
        wrapped = _CAPTURED[pattern] = re.compile(f"({pattern.pattern})", pattern.flags)
    return wrapped


def _shorter(decode: _Decoder, match: str) -> str:
    value = decode(match)
    return value if value is not None and len(value) < len(match) else match


def _textlike(raw: bytes) -> str | None:
    """`raw` as text when it is printable UTF-8 (a decoded token, not binary noise)."""
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not value:
        return None
    visible = value if value.isprintable() else _INVISIBLE_RE.sub("", value).replace(
        "\n", "").replace("\t", "").replace("\r", "")
    return value if visible.isprintable() else None


def _json_escapes(run: str) -> str | None:
    try:
        value = codecs.decode(run, "unicode_escape")
    except UnicodeDecodeError:
        return None
    if "\\x" in run and "\\u" not in run and not value.isascii():
        # `\xe2\x80\x8b` written by C or a shell is UTF-8 bytes, not code points.
        with contextlib.suppress(UnicodeEncodeError, UnicodeDecodeError):
            value = value.encode("latin-1").decode("utf-8")
    try:
        value = value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        return None
    visible = _INVISIBLE_RE.sub("", value)
    if not visible:
        return value  # escaped invisible characters, which the next pass strips
    # Code escapes a lone accent or a control byte; a disguise spells a whole word.
    if not visible.isprintable() or (run.count("\\") < 4 and not _ASCII_WORD_RE.search(value)):
        return None
    return value


_ASCII_WORD_RE = re.compile(r"[A-Za-z0-9]")


def _entities(run: str) -> str | None:
    value = html.unescape(run)
    return value if value != run else None


def _percent(run: str) -> str | None:
    try:
        return urllib.parse.unquote(run, errors="strict")
    except UnicodeDecodeError:
        return None


def _base64(token: str) -> str | None:
    body = token.rstrip("=")
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4),
                               validate=True)
    except (binascii.Error, ValueError):
        return None
    value = _textlike(raw)
    # A decoded token, not a sentence's worth of words in another encoding's disguise.
    return value if value is not None and len(value) >= 8 else None


def _hex(token: str) -> str | None:
    if len(token) % 2:
        return None
    try:
        return _textlike(bytes.fromhex(token))
    except ValueError:
        return None


_CHUNK = 4096


def _non_ascii_spans(text: str) -> list[tuple[int, int]]:
    """Merged 4 KB blocks holding a non-ASCII character (str.isascii runs word-wise in C)."""
    spans: list[tuple[int, int]] = []
    for lo in range(0, len(text), _CHUNK):
        if not text[lo:lo + _CHUNK].isascii():
            hi = min(len(text), lo + _CHUNK)
            if spans and spans[-1][1] == lo:
                spans[-1] = (spans[-1][0], hi)
            else:
                spans.append((lo, hi))
    return spans


# Past this many invisible runs the text is built to be costly: its map is kept per block
# of 256 characters (a finding there redacts whole blocks) instead of per character.
_PRECISE_RUNS = 4096
_BLOCK = 256


def _strip_invisible(text: str, layers: list[_Layer]) -> str:
    spans = _non_ascii_spans(text)
    found = (m.span() for lo, hi in spans for m in _INVISIBLE_RE.finditer(text, lo, hi))
    runs = list(itertools.islice(found, _PRECISE_RUNS + 1))
    if not runs:
        return text
    if len(runs) <= _PRECISE_RUNS:
        # A run never crosses into an ASCII block, so searching the others finds them all.
        return _rewrite(text, [(start, end, "") for start, end in runs], layers)
    rewrites: list[tuple[int, int, str]] = []
    for lo, hi in spans:
        for start in range(lo, hi, _BLOCK):
            block = text[start:min(hi, start + _BLOCK)]
            cleaned = _INVISIBLE_RE.sub("", block)
            if len(cleaned) < len(block):
                rewrites.append((start, start + len(block), cleaned))
    return _rewrite(text, rewrites, layers)


def _strip(text: str, layers: list[_Layer]) -> str:
    if not text.isascii():
        text = _strip_invisible(text, layers)
    for literal, pattern in _ANSI_RES:
        if literal in text:
            text = _apply(text, pattern, None, layers)
    return text


def _unescape(text: str, layers: list[_Layer]) -> str:
    # Percent-encoding first: it is the outer layer of an escaped URL or form value.
    if "%" in text:
        text = _apply(text, _PERCENT_RE, _percent, layers)
    if "\\u" in text or "\\x" in text or "\\U" in text:
        text = _apply(text, _JSON_ESC_RE, _json_escapes, layers)
    if "&" in text:
        text = _apply(text, _ENTITY_RE, _entities, layers)
    return text


def _join(text: str, layers: list[_Layer]) -> str:
    if "\\\n" in text or "\\\r\n" in text:
        text = _apply(text, _CONTINUATION_RE, None, layers)
    text = _apply(text, _WRAPPED_RE, None, layers)
    # One pattern per quote, each starting with its literal: the engine skips to it.
    for pattern in _CONCAT_RES:
        text = _apply(text, pattern, None, layers)
    return text


def _decode(text: str, layers: list[_Layer]) -> str:
    """Base64 and hex runs of 20 characters or more, decoded where they are text.

    Candidates come from str.split, which runs in C: only words of 20 characters or
    more reach Python, and a regex runs on each of those words alone."""
    rewrites: list[tuple[int, int, str]] = []
    decoded: dict[str, str | None] = {}  # a repeated run is decoded once
    pos = 0
    for word in [w for w in text.split() if len(w) >= 20]:
        at = text.find(word, pos)
        pos = at + len(word)
        for m in _BASE64_RE.finditer(word):
            run = m.group()
            value = decoded[run] if run in decoded else decoded.setdefault(
                run, _base64_or_hex(run))
            if value is not None and len(value) < m.end() - m.start():
                rewrites.append((at + m.start(), at + m.end(), value))
    return _rewrite(text, rewrites, layers)


def _rewrite(text: str, rewrites: list[tuple[int, int, str]], layers: list[_Layer]) -> str:
    """`text` with each (start, end) span replaced, as one layer."""
    if not rewrites:
        return text
    orig_lens: list[int] = []
    norm_lens: list[int] = []
    pieces: list[str] = []
    pos = 0
    for start, end, value in rewrites:
        orig_lens += (start - pos, end - start)
        norm_lens += (start - pos, len(value))
        pieces += (text[pos:start], value)
        pos = end
    orig_lens.append(len(text) - pos)
    norm_lens.append(len(text) - pos)
    pieces.append(text[pos:])
    result = "".join(pieces)
    layers.append(_Layer(list(itertools.accumulate(orig_lens, initial=0))[:-1],
                         list(itertools.accumulate(norm_lens, initial=0))[:-1],
                         len(text), len(result)))
    return result


def _base64_or_hex(token: str) -> str | None:
    if _HEX_RE.fullmatch(token):
        return _hex(token)
    return _base64(token)


def _rewrite_spans(layers: list[_Layer]) -> list[tuple[int, int]]:
    """Where the last of `layers` rewrote, in the coordinates of the text after all of them."""
    spans: list[tuple[int, int]] = []
    for i, layer in enumerate(layers):
        for start, end in layer.changes():
            for later in layers[i + 1:]:
                start, end = later.forward(start), later.forward(end)
            spans.append((start, end))
    return spans


def _rewrote_invisible(view: str, layers: list[_Layer]) -> bool:
    if not layers or view.isascii():
        return False
    if sum(len(layer.norm_starts) for layer in layers) > 2048:
        return True  # many rewrites: one search of the whole view is cheaper
    return any(_INVISIBLE_RE.search(view, start, end) for start, end in _rewrite_spans(layers))


def normalise(text: str) -> View:
    """`text` with disguises undone, in linear time; never longer than `text`."""
    layers: list[_Layer] = []
    view = _strip(text, layers)
    before = len(layers)
    view = _unescape(view, layers)
    if _rewrote_invisible(view, layers[before:]):
        view = _strip(view, layers)  # escapes may have spelled invisible characters
    view = _join(view, layers)
    before = len(layers)
    view = _decode(view, layers)
    if len(layers) > before:
        view = _unescape(view, layers)   # a decoded token may itself be escaped
        view = _strip(view, layers)
        view = _join(view, layers)
    return View(view, tuple(layers), len(text))


def view_windows(view: View, reach: int, limit: int = 4096) -> list[tuple[int, int]]:
    """Merged spans of `view.text` worth scanning again: `reach` characters around each
    change, widened to whole lines (up to 200 characters more). Past `limit` changes,
    or when the windows cover most of it, the whole view: one scan then costs less."""
    text = view.text
    size = len(text)
    if not view.changed:
        return []
    if view.change_count() > limit:
        return [(0, size)]
    windows: list[tuple[int, int]] = []
    for start, end in view.changed_spans():
        lo, hi = max(0, start - reach), min(size, end + reach)
        nl = text.rfind("\n", max(0, lo - 200), lo)
        lo = nl + 1 if nl != -1 else lo
        nl = text.find("\n", hi, hi + 200)
        hi = nl if nl != -1 else hi
        if windows and lo <= windows[-1][1]:
            windows[-1] = (windows[-1][0], max(hi, windows[-1][1]))
        else:
            windows.append((lo, hi))
    if sum(hi - lo for lo, hi in windows) > size // 2:
        return [(0, size)]
    return windows


def joined_windows(view: View, reach: int) -> tuple[str, list[int], list[int]]:
    """The windows of `view_windows`, joined by blank lines into one text to scan once:
    (text, start of each window in it, start of each window in the view)."""
    windows = view_windows(view, reach)
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    for lo, hi in windows:
        starts.append(pos)
        parts.append(view.text[lo:hi])
        pos += hi - lo + 2
    return "\n\n".join(parts), starts, [lo for lo, _ in windows]


def place(view: View, starts: list[int], los: list[int], start: int,
          end: int) -> tuple[int, int] | None:
    """A span of the joined windows as a span of the original text; None across windows."""
    i = bisect.bisect_right(starts, start) - 1
    if i < 0:
        return None
    offset = los[i] - starts[i]
    if i + 1 < len(starts) and end > starts[i + 1] - 2:
        return None
    return view.original_span(start + offset, end + offset)
