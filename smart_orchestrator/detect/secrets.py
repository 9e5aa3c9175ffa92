"""Secret scanning for prompts, tool inputs and subagent outputs.

`scan_text` runs in time linear in its input: every pattern is bounded, each scanner
is gated on a literal, and ordinary text is skipped a token at a time. Findings carry
a redacted preview only, never the secret. detect-secrets baselines are read without
importing detect-secrets. Its inline `pragma: allowlist secret` comments are honoured
only when the caller asks (`pragmas=True`): they mark lines of source files a person
reviews, and whoever writes a prompt or an output could write one beside a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from . import _secret_context, _secret_formats, _secret_generic, _secret_prose, _secret_syntax
from ._candidates import Hit
from ._literals import Literals
from ._secret_context import scan_context
from ._secret_formats import scan_formats
from ._secret_generic import scan_assignments
from ._secret_prose import scan_prose
from ._secret_syntax import scan_syntax
from ._text import LineIndex, ascii_lower
from .normalise import View, joined_windows, normalise, place

__all__ = ["RULE_IDS", "Allowlist", "SecretFinding", "load_baseline", "parse_baseline",
           "redact_text", "scan_text"]


# Every rule id a finding can carry.
RULE_IDS: frozenset[str] = (_secret_formats.RULE_IDS | _secret_context.RULE_IDS
                            | _secret_generic.RULE_IDS | _secret_syntax.RULE_IDS
                            | _secret_prose.RULE_IDS)


class SecretFinding(NamedTuple):
    """One secret found in a text; `redacted` is safe to log, the secret is not kept."""

    rule_id: str
    line: int
    start: int
    end: int
    redacted: str
    severity: str


class Allowlist:
    """Secrets already reviewed and accepted, as sha1 hex digests of their values.

    The digest scheme is detect-secrets' `hashed_secret`, so a project's
    `.secrets.baseline` can be loaded as is.
    """

    __slots__ = ("_hashes",)

    def __init__(self, hashed_secrets: Iterable[str] = ()) -> None:
        self._hashes = frozenset(h.lower() for h in hashed_secrets)

    def __len__(self) -> int:
        return len(self._hashes)

    def __contains__(self, hashed_secret: object) -> bool:
        return isinstance(hashed_secret, str) and hashed_secret.lower() in self._hashes

    def allows(self, secret: str) -> bool:
        import hashlib  # only projects with a baseline pay for it

        digest = hashlib.sha1(secret.encode("utf-8"), usedforsecurity=False).hexdigest()
        return digest in self._hashes


_SHA1_RE = re.compile(r"[0-9a-fA-F]{40}")


def load_baseline(path: str | os.PathLike[str]) -> Allowlist:
    """Read a detect-secrets baseline; a malformed file raises a one-line ValueError."""
    with open(path, "rb") as fh:
        return parse_baseline(fh.read(), path)


def parse_baseline(raw: bytes, path: str | os.PathLike[str]) -> Allowlist:
    import json  # kept off the import path of every scan

    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"secrets baseline {os.fspath(path)!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"secrets baseline {os.fspath(path)!r} is not valid JSON "
                         f"(line {exc.lineno}, column {exc.colno})") from None
    return Allowlist(_baseline_hashes(data, os.fspath(path)))


def _baseline_hashes(data: object, where: str) -> list[str]:
    def bad(why: str) -> ValueError:
        return ValueError(f"secrets baseline {where!r} is malformed: {why}")

    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise bad('expected an object with a "results" object')
    hashes: list[str] = []
    for filename, entries in data["results"].items():
        if not isinstance(entries, list):
            raise bad(f"results[{filename!r}] is not a list")
        for entry in entries:
            digest = entry.get("hashed_secret") if isinstance(entry, dict) else None
            if not isinstance(digest, str) or not _SHA1_RE.fullmatch(digest):
                raise bad(f"an entry of results[{filename!r}] has no 40-hex hashed_secret")
            hashes.append(digest)
    return hashes


# detect-secrets' inline pragmas, after one of the comment markers it recognises.
_PRAGMA_SAME_LINE_RE = re.compile(
    r"(?:#|//|/\*|'|--|<!--)[ \t]*pragma: ?(?:allow|white)list[ -]secret")
_PRAGMA_NEXT_LINE_RE = re.compile(
    r"^[ \t]*(?:#|//|/\*|'|--|<!--)[ \t]*pragma: ?allowlist[ -]nextline[ -]secret")


def scan_text(text: str, *, allowlist: Allowlist | None = None,
              pragmas: bool = False) -> list[SecretFinding]:
    """Every secret in `text`, ordered by position, minus allowlisted ones (and, with
    `pragmas`, minus those on a line an inline allowlist comment covers)."""
    if not text:
        return []
    lowered = ascii_lower(text)
    hits = _raw_hits(text, lowered)
    view = normalise(text)
    if view.changed:
        hits += _view_hits(view, text)
    if not hits:
        return []
    index = LineIndex(text) if pragmas and "pragma" in lowered else None
    pragma_lines: dict[int, bool] = {}  # one check per line, however many hits it holds
    findings: list[SecretFinding] = []
    # Hits come in text order: lines are counted between them, not indexed for the
    # whole text (a large text with few findings pays for its newlines once, in C).
    line, counted = 1, 0
    for hit in _resolve_overlaps(hits):
        line += text.count("\n", counted, hit.start) if hit.start >= counted else -text.count(
            "\n", hit.start, counted)
        counted = hit.start
        if index is not None:
            allowed = pragma_lines.get(line)
            if allowed is None:
                allowed = pragma_lines[line] = _pragma_allows(index, line)
            if allowed:
                continue
        if allowlist is not None and any(allowlist.allows(v) for v in hit.hash_values):
            continue
        findings.append(SecretFinding(hit.rule_id, line, hit.start, hit.end,
                                      _mask(text[hit.start:hit.end]), hit.severity))
    return findings


def _raw_hits(text: str, lowered: str) -> list[Hit]:
    literals = Literals(text, lowered)
    return (scan_formats(text) + scan_context(text, lowered, literals)
            + scan_syntax(text, lowered, literals) + scan_assignments(text, lowered, literals)
            + scan_prose(text))


# Around each change in the normalised view, the longest single-line format fits.
_VIEW_REACH = 320


# Rules that judge a token by its shape alone: joined across a line break, two lines of
# identifiers (a UUID above a word) look like one random token. A wrapped key is still
# found by the rules that know its format or its name.
_SHAPE_ONLY = frozenset({"random-token-in-prose", "random-token", "secret-in-prose"})


def _view_hits(view: View, text: str) -> list[Hit]:
    """Hits in the normalised view, placed on the original text they were made from."""
    hits: list[Hit] = []
    # The windows are scanned as one text: one pass of each scanner, not one per window.
    joined, starts, los = joined_windows(view, _VIEW_REACH)
    if not joined:
        return hits
    for hit in _raw_hits(joined, ascii_lower(joined)):
        span = place(view, starts, los, hit.start, hit.end)
        if span is not None and not (hit.rule_id in _SHAPE_ONLY
                                     and "\n" in text[span[0]:span[1]]):
            hits.append(hit._replace(start=span[0], end=span[1]))
    return hits


def _pragma_allows(index: LineIndex, line: int) -> bool:
    if _PRAGMA_SAME_LINE_RE.search(index.line_text(line)):
        return True
    return bool(_PRAGMA_NEXT_LINE_RE.search(index.line_text(line - 1)))


def _resolve_overlaps(hits: list[Hit]) -> list[Hit]:
    """Keep the most specific hit of every overlapping group, in text order."""
    hits.sort(key=lambda h: (h.start, -h.end))
    kept: list[Hit] = []
    group: list[Hit] = []
    group_end = -1
    for hit in hits:
        if group and hit.start >= group_end:
            kept.extend(_pick(group))
            group = []
        group.append(hit)
        group_end = max(group_end, hit.end) if len(group) > 1 else hit.end
    kept.extend(_pick(group))
    return kept


def _pick(group: list[Hit]) -> list[Hit]:
    if len(group) == 1:
        return group
    chosen: list[Hit] = []
    for hit in sorted(group, key=lambda h: (h.priority, h.start - h.end)):
        if all(hit.end <= c.start or hit.start >= c.end for c in chosen):
            chosen.append(hit)
    chosen.sort(key=lambda h: h.start)
    return chosen


def _mask(secret: str) -> str:
    """First 4 and last 2 characters of a long secret; short ones entirely masked."""
    secret = secret.replace("\n", " ")
    if len(secret) < 16:
        return "*" * max(len(secret), 8)
    return secret[:4] + "*" * min(len(secret) - 6, 64) + secret[-2:]


def redact_text(text: str, findings: Sequence[SecretFinding]) -> str:
    """`text` with every finding's span replaced by `[REDACTED:<rule_id>]`."""
    parts: list[str] = []
    pos = 0
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.end <= pos:
            continue
        start = max(finding.start, pos)
        parts.append(text[pos:start])
        parts.append(f"[REDACTED:{finding.rule_id}]")
        pos = finding.end
    parts.append(text[pos:])
    return "".join(parts)
