"""A random token standing alone in running text: "authenticate using l70sfohjtve9pz4u0cph".

A prompt or a pasted chat names no variable and quotes no assignment; a credential there
is a word that no language has: long, with digits spread through its letters, and not
the shape of an identifier, a path, a version, a UUID or a hash. Only lines that read as
sentences are considered (words, few code marks), so code, lockfiles and data are not.

A token random enough on its face is reported wherever it stands (`random-token`): mixed
case switching every few letters, digits spread through it, near-maximal entropy. Code,
lockfiles and docs rarely hold such a word that is not a credential: digests are hex or
carry their algorithm (`sha512-`), base64 of text decodes to text (and the normalised view
scans what it says), and a block of wrapped base64 lines is data.
"""

from __future__ import annotations

import base64
import binascii
import itertools
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

RULE_IDS = frozenset({"random-token-in-prose", "random-token"})

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


_DIGEST_PREFIX_RE = re.compile(r"(?:sha\d+|md5|blake2b?|sri)[-_]", re.IGNORECASE)
_B64_TEXT_RE = re.compile(r"[\t\n\r -~]*")


def _decodes_to_text(token: str) -> bool:
    """Base64 (standard or URL-safe) of printable text: a JWT header, an encoded script."""
    body = token.replace("-", "+").replace("_", "/")
    body = body[:len(body) - len(body) % 4]
    try:
        raw = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) >= 12 and bool(_B64_TEXT_RE.fullmatch(raw.decode("latin-1")))


# API object ids and their tails (`toolu_01…`, `msg_01…`, `req_011C…`): the policy checks
# every suffix of a tool_use_id, and ids are not credentials.
_OBJECT_ID_RE = re.compile(r"(?:[a-z]{0,12}_)?(?:01|1{1,2}C)")
# A lower-case vendor prefix (`ghp_`, `xyz-live-`): the format rules and
# `vendor-prefixed-token` judge those, with the prefix's meaning.
_VENDOR_PREFIX_RE = re.compile(r"[a-z]{2,10}[_-]")


def _strongly_random(token: str) -> bool:
    """Random on its face wherever it stands: `aB3dE5gH7kL9` mixing, not `MyApp2Config`."""
    if not token.replace("-", "").replace("_", "").isalnum() or _DIGEST_PREFIX_RE.match(token):
        return False
    if _OBJECT_ID_RE.match(token) or _VENDOR_PREFIX_RE.match(token):
        return False
    letters = [c for c in token if c.isalpha()]
    upper = sum(c.isupper() for c in letters)
    if upper < 2 or upper > len(letters) - 2:
        return _one_case_random(token, letters)
    switches = sum(a.isupper() != b.isupper() for a, b in itertools.pairwise(letters))
    if switches < len(letters) // 4:
        return False
    # Random strings of 24-32 characters hold nearly every character once.
    if shannon_entropy(token) < min(4.2, math.log2(len(token)) - 0.5):
        return False
    return not _decodes_to_text(token)


_NON_HEX_LETTER_RE = re.compile(r"[g-zG-Z]")


def _one_case_random(token: str, letters: list[str]) -> bool:
    """One case, letters and digits interleaved at random (`l70sfohjtve9pz4u0cph…`, base32):
    not hex (a digest), not words, digits a sixth of it or more."""
    if not token.isalnum() or _NON_HEX_LETTER_RE.search(token) is None:
        return False
    digits = len(token) - len(letters)
    if digits < max(4, len(token) // 6) or digits > 0.7 * len(token):
        return False
    return shannon_entropy(token) >= 4.0 and not _decodes_to_text(token)


def _in_data_block(text: str, start: int, end: int) -> bool:
    """A line of wrapped base64 (an image, a certificate): its neighbour has the same shape."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end == -1 else line_end
    if end - start < 48 or text[line_start:line_end].strip() != text[start:end]:
        return False
    nxt = text[line_end + 1:text.find("\n", line_end + 1) if "\n" in text[line_end + 1:]
               else len(text)].strip()
    prev = text[text.rfind("\n", 0, max(0, line_start - 1)) + 1:max(0, line_start - 1)].strip()
    return any(len(n) >= 16 and _BASE64_LINE_RE.fullmatch(n) for n in (nxt, prev))


# The value of a name that says what else a random string is: a digest, an id, a nonce.
_NAME_BEFORE_RE = re.compile(r"([A-Za-z_][\w.-]{0,40})[^\w\n]{0,12}$")
_NON_SECRET_NAME_RE = re.compile(
    r"(?:^|[_.\-]|(?<=[a-z])(?=[A-Z]))(?:ids?|uuid|guid|hash(?:es)?|digest|checksum|sha\d*|md5"
    r"|etag|nonce|sig|sign|signed|signature|hmac|mac|integrity|fingerprint|commit|rev|revision|ref|version|name"
    r"|slug|path|url|cid|trace|span|request|public|pub|csrf|xsrf)(?=$|[_.\-A-Z\d])", re.IGNORECASE)


def _named_non_secret(text: str, start: int) -> bool:
    m = _NAME_BEFORE_RE.search(text, max(0, start - 60), start)
    return m is not None and _NON_SECRET_NAME_RE.search(m.group(1)) is not None


_BASE64_LINE_RE = re.compile(r"[A-Za-z0-9+/=_-]+")
# 32 characters or more: shorter random strings are the shape of session ids, nonces and
# cookies in code and tests as often as of credentials.
_STRONG_IN_WORD_RE = re.compile(r"(?<![A-Za-z0-9_\-+/=.~%\\])[A-Za-z0-9][A-Za-z0-9_\-]{30,126}"
                                r"[A-Za-z0-9](?![A-Za-z0-9_\-+/=~%\\])")
# Random parts joined by dots or dashes (`Xk9…Qz.Lm3…`): one credential when every part is
# random; a host name or a dotted path has a word among its parts.
_DOTTED_IN_WORD_RE = re.compile(r"(?<![A-Za-z0-9_\-+/=.~%\\])[A-Za-z0-9][A-Za-z0-9_\-]{1,80}"
                                r"(?:\.[A-Za-z0-9_\-]{2,80}){1,3}(?<=[A-Za-z0-9])"
                                r"(?![A-Za-z0-9_\-+/=~%\\]|\.[A-Za-z0-9])")
_WORD_PART_RE = re.compile(r"[a-z]{3,}|[A-Z]?[a-z]{4,}")
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
        if len(word) >= 32 and _strong_hits(text, word, at, verdicts, hits):
            continue
        if _assigned_hits(text, word, at, verdicts, hits):
            continue
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


def _strong_hits(text: str, word: str, at: int, verdicts: dict[str, bool],
                 hits: list[Hit]) -> bool:
    """`random-token` hits for the strongly random tokens inside `word` (a value after
    `name=`, in quotes or brackets); whether there was one."""
    found = False
    if "." in word:
        found = _dotted_hits(text, word, at, verdicts, hits)
    for m in _STRONG_IN_WORD_RE.finditer(word):
        token = m.group()
        key = "\0" + token
        strong = verdicts.get(key)
        if strong is None:
            strong = verdicts[key] = _random_token(token) and _strongly_random(token)
        end = at + m.end()
        # A preview cut short (`MIIEow…`, Claude Code's `content` beside the full `message`):
        # the whole value is judged where it is written in full, by the rule that knows it.
        if strong and text.startswith(("\u2026", "..."), end):
            continue
        if strong and not _in_data_block(text, at + m.start(), end) and (
                not _named_non_secret(text, at + m.start())):
            hits.append(Hit("random-token", at + m.start(), at + m.end(), "medium",
                            PRIORITY_GENERIC, (token,)))
            found = True
    return found


# 20 to 31 characters: random on its face, and the value of a name (`acme: …`,
# `"acme": "…"`, `acme=…`) that does not say it is an id, a hash or a nonce.
_SHORT_IN_WORD_RE = re.compile(r"(?<![A-Za-z0-9_\-+/.~%\\])[A-Za-z0-9][A-Za-z0-9_\-]{18,29}"
                               r"[A-Za-z0-9](?![A-Za-z0-9_\-+/=.~%\\])")
# A configuration key or a variable, not a label of prose (`Decode: …`, `Note: …`: a
# capitalised word before a colon introduces text, and reversed or rotated text of
# anything looks random).
# Matched on the reversed text before the token, so that it is anchored where the token
# starts (a search ending in `$` tried every offset of the window, once per token).
_ASSIGNED_REV_RE = re.compile(r"[\"'`]?[ \t]{0,3}(?P<op>=|>=|=:|:)[ \t]{0,3}[\"']?"
                              r"(?P<name>[\w.-]{1,41})")
_LABEL_RE = re.compile(r"[A-Z][a-z]+")


def _assigned_hits(text: str, word: str, at: int, verdicts: dict[str, bool],
                   hits: list[Hit]) -> bool:
    found = False
    for m in _SHORT_IN_WORD_RE.finditer(word):
        token = m.group()
        key = "\2" + token
        strong = verdicts.get(key)
        if strong is None:
            strong = verdicts[key] = _random_token(token) and _strongly_random(token)
        if not strong:
            continue
        start = at + m.start()
        line_start = max(text.rfind("\n", max(0, start - 60), start) + 1, start - 60)
        named = _ASSIGNED_REV_RE.match(text[line_start:start][::-1])
        if named is None:
            continue
        name = named.group("name")[::-1].lstrip("0123456789_.-")
        if not name or not name[0].isalpha() or (
                named.group("op") == ":" and _LABEL_RE.fullmatch(name)):
            continue
        if not _named_non_secret(text, start):
            hits.append(Hit("random-token", start, start + len(token), "medium",
                            PRIORITY_GENERIC, (token,)))
            found = True
    return found


def _dotted_hits(text: str, word: str, at: int, verdicts: dict[str, bool],
                 hits: list[Hit]) -> bool:
    found = False
    for m in _DOTTED_IN_WORD_RE.finditer(word):
        token = m.group()
        key = "\1" + token
        strong = verdicts.get(key)
        if strong is None:
            strong = verdicts[key] = _dotted_random(token)
        if strong and not _named_non_secret(text, at + m.start()):
            hits.append(Hit("random-token", at + m.start(), at + m.end(), "medium",
                            PRIORITY_GENERIC, (token,)))
            found = True
    return found


def _dotted_random(token: str) -> bool:
    parts = token.split(".")
    # Short lower-case segments before the body are a vendor's prefix (`mbx.pat.…`); a
    # word as the last segment, or a longer one anywhere, is a host or a dotted name
    # (`cdn7f3k2.cloudfront.net`, `module.sub.name`).
    if _WORD_PART_RE.fullmatch(parts[-1]) or any(
            len(p) > 4 and _WORD_PART_RE.fullmatch(p) for p in parts[:-1]):
        return False
    # A readable value before its signature (`tobi.CP7AWaXD…`, a signed cookie) is not
    # one random credential: every part longer than a prefix must look random itself.
    if any(len(p) >= 4 and not (any(c.isdigit() for c in p) or (
            p.lower() != p and p.upper() != p and not p.istitle())) for p in parts):
        return False
    if _decodes_to_text(parts[0]):
        return False  # a JWT's header (the JWT rule judges it) or other encoded text
    core = token.replace(".", "")
    return len(core) >= 32 and _random_token(core) and _strongly_random(core)


def _reads_as_prose(text: str, start: int, token: str) -> bool:
    line_start = text.rfind("\n", 0, start) + 1
    end = text.find("\n", start)
    line = text[line_start:end if end != -1 else len(text)]
    # A token alone on its line (a quoted reply `> token`): judge the next line.
    if len(line) - len(token) < 12 and end != -1:
        after = text.find("\n", end + 1)
        line += " " + text[end + 1:after if after != -1 else len(text)]
    return _prose_line(line.replace(token, ""))
