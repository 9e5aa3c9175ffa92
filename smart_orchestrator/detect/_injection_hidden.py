"""Content a human reviewer does not see: markup, invisible Unicode, encodings.

`hidden_payloads` extracts and decodes such content so the caller can scan it with
the ordinary rules; `structural_findings` reports anomalies that are suspicious in
themselves (invisible characters, prose smuggled into a table, token floods).
"""

from __future__ import annotations

import base64
import binascii
import operator
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from ._text import anchor_windows

if TYPE_CHECKING:
    from .injection import InjectionFinding

__all__ = ["HiddenPayload", "hidden_payloads", "structural_findings"]


class HiddenPayload(NamedTuple):
    rule_id: str
    start: int
    end: int
    decoded: str
    description: str
    # Reported even when the decoded text matches no rule (None: only if it does).
    fallback_severity: str | None = None


_MAX_COMMENT = 4000
_COMMENT_CUE_RE = re.compile(
    r"\b(?:you|your|assistant|ai|model|llm|chatbot)\b[^.!?\n]{0,80}\b(?:must|should|will|need to"
    r"|are to)\b|\b(?:ignore|disregard|respond|reply|print|output|say|state|tell the user"
    r"|instruct)\b[^.!?\n]{0,60}\b(?:you|your|instead|following|user)\b", re.IGNORECASE)
_HIDDEN_STYLE_RE = re.compile(
    r"style\s*=\s*[\"'][^\"'>]{0,120}(?:display\s*:\s*none|visibility\s*:\s*hidden"
    r"|font-size\s*:\s*0(?:px|pt|em)?\s*[;\"']|opacity\s*:\s*0(?:\.0+)?\s*[;\"']"
    r"|color\s*:\s*(?:white|#fff(?:fff)?|transparent))[^>]{0,200}>([^<]{1,2000})")
_TAG_RUN_RE = re.compile("[\U000e0020-\U000e007e]{4,}")
_B64_RUN_RE = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=_-])")
_UPPER_RE = re.compile(r"[A-Z]")
_DIGIT_RE = re.compile(r"[0-9]")
_SPACED_HEX_RE = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{2}[ :]){11,}[0-9a-f]{2}(?![0-9a-f])")
_BINARY_RE = re.compile(r"(?<![01])(?:[01]{8}\s?){8,}(?![01])")
_HEX_RE = re.compile(r"[0-9a-fA-F]+")
_TEXTLIKE_RE = re.compile(r"[A-Za-z][a-z]+ [a-z]+")
_MAX_DECODE = 8192


def _textlike(raw: bytes) -> str | None:
    """The decoded bytes as text when they read like a sentence, else None."""
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in decoded)
    if printable < len(decoded) * 0.95 or not _TEXTLIKE_RE.search(decoded):
        return None
    return decoded


def _decode_base64(token: str) -> str | None:
    if len(token) > _MAX_DECODE:
        return None
    body = token.rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(
            body.replace("+", "-").replace("/", "_") + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    return _textlike(raw)


def _decode_hex(token: str) -> str | None:
    digits = re.sub(r"[\s:]", "", token)
    if len(digits) % 2 or len(digits) > _MAX_DECODE:
        return None
    try:
        return _textlike(bytes.fromhex(digits))
    except ValueError:
        return None


def _decode_binary(token: str) -> str | None:
    bits = "".join(token.split())
    if len(bits) % 8 or len(bits) > _MAX_DECODE * 8:
        return None
    return _textlike(bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))


def _base64_tokens(text: str, tokens: list[str]) -> Iterator[tuple[int, str]]:
    """(offset, run) of every base64-looking run of 24+ characters among the tokens."""
    cursor = 0
    find = text.find
    for token in [t for t in tokens if len(t) >= 24]:
        base = find(token, cursor)
        cursor = base + len(token)
        for m in _B64_RUN_RE.finditer(token):
            yield base + m.start(), m.group(0)


def _encoded(text: str, lowered: str, tokens: list[str]) -> list[HiddenPayload]:
    found: list[HiddenPayload] = []
    desc = "Contains an encoded payload that decodes to instructions."
    for start, token in _base64_tokens(text, tokens):
        hexlike = len(token) % 2 == 0 and _HEX_RE.fullmatch(token) is not None
        if not hexlike and not (_UPPER_RE.search(token) and _DIGIT_RE.search(token)
                                and token.lower() != token):
            continue  # encoded text always mixes upper case, lower case and digits
        decoded = _decode_hex(token) if hexlike else _decode_base64(token)
        if decoded:
            found.append(HiddenPayload("encoded-instruction", start, start + len(token), decoded,
                                       desc))
    for literal, pattern, decode in ((" 20 ", _SPACED_HEX_RE, _decode_hex),
                                     ("00100000", _BINARY_RE, _decode_binary)):
        if literal not in lowered:
            continue
        for lo, hi in anchor_windows(lowered, literal, 600, 600):
            for m in pattern.finditer(lowered, lo, hi):
                decoded = decode(m.group(0))
                if decoded:
                    found.append(HiddenPayload("encoded-instruction", m.start(), m.end(),
                                               decoded, desc))
    return found


def _comment_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each `<!-- ... -->` no longer than the limit, in one forward pass."""
    spans: list[tuple[int, int]] = []
    find = text.find
    pos = find("<!--")
    close = find("-->", pos + 4) if pos != -1 else -1
    while pos != -1 and close != -1:
        if close < pos + 4:
            close = find("-->", pos + 4)
            continue
        if close - pos <= _MAX_COMMENT:
            spans.append((pos, close + 3))
            pos = find("<!--", close + 3)
        else:
            pos = find("<!--", pos + 4)
    return spans


def _markup(text: str, lowered: str) -> list[HiddenPayload]:
    found: list[HiddenPayload] = []
    if "<!--" in text:
        for start, end in _comment_spans(text):
            content = text[start + 4:end - 3]
            cue = "medium" if _COMMENT_CUE_RE.search(content) else None
            found.append(HiddenPayload(
                "hidden-instruction-markup", start, end, content,
                "An HTML comment, invisible when rendered, carries instructions.", cue))
    if "style" in lowered and ("none" in lowered or "hidden" in lowered or ":0" in lowered
                               or "white" in lowered or "#fff" in lowered or "opacity" in lowered):
        for m in _HIDDEN_STYLE_RE.finditer(lowered):
            found.append(HiddenPayload(
                "hidden-instruction-markup", m.start(), m.end(), text[m.start(1):m.end(1)],
                "Text styled to be invisible carries instructions."))
    return found


def _split_words(text: str) -> list[HiddenPayload]:
    """Words broken up by invisible characters, rejoined with the rest of their line."""
    found: list[HiddenPayload] = []
    for m in _SPLIT_WORD_RE.finditer(text):
        end = text.find("\n", m.end(), m.end() + 400)
        end = m.end() + 400 if end == -1 else end
        cleaned = _INVISIBLE_STRIP_RE.sub("", text[m.start():end])
        found.append(HiddenPayload(
            "hidden-unicode-instruction", m.start(), m.end(), cleaned,
            "Invisible characters split words apart to hide instructions.", "medium"))
    return found


def hidden_payloads(text: str, lowered: str, tokens: list[str],
                    extra: frozenset[str]) -> list[HiddenPayload]:
    """Hidden or encoded content of `text`, decoded for a second scan.

    `tokens` are the whitespace-separated tokens of `text`, `extra` its non-ASCII characters.
    """
    found = _markup(text, lowered)
    if not extra.isdisjoint(_INVISIBLE_CHARS):
        found += _split_words(text)
    if not any(c >= "\U000e0000" for c in extra):
        return found + _encoded(text, lowered, tokens)
    for m in _TAG_RUN_RE.finditer(text):
        if m.start() and text[m.start() - 1] == "\U0001f3f4":
            continue  # subdivision flag emoji use tag characters legitimately
        decoded = "".join(chr(ord(c) - 0xE0000) for c in m.group(0))
        found.append(HiddenPayload(
            "hidden-unicode-instruction", m.start(), m.end(), decoded,
            "Invisible Unicode tag characters spell out hidden text.", "high"))
    return found + _encoded(text, lowered, tokens)


# Characters that only hide things; ZWNJ and soft hyphens are left out (Persian, hyphenation).
_INVISIBLE_CLASS = "\u200b\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
_SPLIT_WORD_RE = re.compile(f"(?:[^\\W\\d_][{_INVISIBLE_CLASS}]+){{2,}}[^\\W\\d_]")
_INVISIBLE_STRIP_RE = re.compile(f"[{_INVISIBLE_CLASS}]")
_INVISIBLE_SET = "\u200b\u200c\u200e\u200f\u2060-\u2064\ufeff\u00ad\u202a-\u202e\u2066-\u2069"
_BIDI_SET = "\u202a-\u202e\u2066-\u2069"
# The runs worth reporting: three or more invisible characters, or any run holding a
# bidirectional control. Single zero-width characters between letters are left to the
# normalised view, and never reach Python one by one.
_INVISIBLE_RE = re.compile(f"[{_INVISIBLE_SET}]{{3,}}|[{_INVISIBLE_SET}]?[{_BIDI_SET}]"
                           f"[{_INVISIBLE_SET}]?")
# More runs change no decision.
_MAX_INVISIBLE = 32


_INVISIBLE_CHARS = ("\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad"
                    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _invisible(text: str, extra: frozenset[str]) -> list[InjectionFinding]:
    from .injection import InjectionFinding

    found: list[InjectionFinding] = []
    if extra.isdisjoint(_INVISIBLE_CHARS):
        return found
    for m in _INVISIBLE_RE.finditer(text):
        run = m.group(0)
        bidi = any("\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069" for c in run)
        desc = ("Contains bidirectional control characters that reorder displayed text."
                if bidi else "Contains a run of invisible zero-width characters.")
        found.append(InjectionFinding("hidden-unicode", "medium", m.start(), m.end(), desc))
        if len(found) >= _MAX_INVISIBLE:
            break
    return found


_PROSE_RE = re.compile(r"[A-Za-z][a-z']+(?:[ ,][A-Za-z0-9'\"$%-]+){3,}[.?!'\"]?\s*$")


def _table_intrusions(text: str) -> list[InjectionFinding]:
    """Prose lines inside output that is otherwise a Markdown table."""
    from .injection import InjectionFinding

    if text.count("\n|") * 3 < text.count("\n"):
        return []  # not mostly table rows
    lines = text.split("\n")
    rows = sum(1 for line in lines if line.lstrip().startswith("|"))
    others = [line for line in lines if line.strip() and not line.lstrip().startswith("|")]
    if rows < 3 or len(others) > max(2, rows // 4):
        return []
    found: list[InjectionFinding] = []
    pos = 0
    for line in lines:
        stripped = line.strip()
        if stripped and not stripped.startswith("|") and _PROSE_RE.match(stripped):
            found.append(InjectionFinding(
                "out-of-place-instruction", "low", pos, pos + len(line),
                "A sentence is embedded in tabular tool output."))
        pos += len(line) + 1
    return found


def _floods(text: str, tokens: list[str]) -> list[InjectionFinding]:
    """The same word or short phrase repeated many times in a row."""
    from .injection import InjectionFinding
    for period, min_reps in ((1, 10), (3, 8)):
        if len(tokens) < period * min_reps:
            break
        same = bytes(map(operator.eq, tokens, tokens[period:]))
        run = b"\x01" * (period * (min_reps - 1))
        at = same.find(run)
        while at != -1 and not all(_WORDISH_RE.fullmatch(t) for t in tokens[at:at + period]):
            # Inside a run the tokens repeat with this period, so every later start in the
            # same run sees the same tokens and fails too: resume after the run, not at+1.
            end = same.find(b"\x00", at)
            at = -1 if end == -1 else same.find(run, end)
        if at == -1:
            continue
        spans = [m.span() for _, m in zip(range(at + period * min_reps), re.finditer(r"\S+", text),
                                          strict=False)]
        start, end = spans[at][0], spans[-1][1]
        return [InjectionFinding("repeated-token-flood", "low", start, end,
                                 "Repeats the same token many times, a known way to derail "
                                 "a model.")]
    return []


# A flooded token must be a word, not a table cell or a code constant.
_WORDISH_RE = re.compile(r"[\"'(]?[a-z][a-z'-]+[.,;:!?\"')]?", re.IGNORECASE)


def structural_findings(text: str, tokens: list[str],
                        extra: frozenset[str]) -> list[InjectionFinding]:
    """Findings that need no rule match: invisible characters, table prose, floods."""
    found: list[InjectionFinding] = []
    if extra:
        found += _invisible(text, extra)
    if "\n|" in text:
        found += _table_intrusions(text)
    return found + _floods(text, tokens)
