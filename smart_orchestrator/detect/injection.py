"""Prompt-injection and dangerous-instruction detection for prompts and tool output.

`detect_injection` looks for the families of attack seen in direct and indirect
prompt injection: instruction override, persona hijack, system-prompt and credential
exfiltration, data exfiltration, destructive or remote-code commands, disabling of
safety controls, and instructions hidden in markup, invisible Unicode or encodings.
Hidden and encoded content is decoded once and scanned with the same rules.

A learned model (`_injection_model`: hashed character n-grams, a linear scorer over
windows of the text) adds what the patterns miss: its best window alone warns
("medium") above a threshold calibrated on held-back data, and it raises any rule
finding to "high" when it agrees the text is an injection (its "low" threshold), which
catches paraphrases a single rule can only rate as weak evidence.

Time is linear in the input: patterns run only in windows around literal anchors and
every gap is bounded; the model is a fixed number of numpy passes. Findings describe the
attack; they never quote the input.
"""

from __future__ import annotations

import bisect
import re
from typing import NamedTuple

from ._injection_confusables import fold_confusables
from ._injection_framing import WordIndex, framing_findings, framing_words
from ._injection_hidden import HiddenPayload, hidden_payloads, structural_findings
from ._injection_matches import matches as _matches
from ._injection_model import DENY_MIN_CHARS, load_model
from ._injection_rules import RULES, Rule
from ._text import anchor_windows, ascii_lower
from .normalise import joined_windows, normalise, place

__all__ = ["SEVERITIES", "InjectionFinding", "detect_injection", "max_severity"]

SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}


class InjectionFinding(NamedTuple):
    """One suspicious span; `description` is a fixed sentence, never input text."""

    rule_id: str
    severity: str
    start: int
    end: int
    description: str


def max_severity(findings: list[InjectionFinding]) -> str | None:
    """The highest severity among `findings`, or None when there are none."""
    if not findings:
        return None
    return max((f.severity for f in findings), key=_RANK.__getitem__)


def detect_injection(text: str) -> list[InjectionFinding]:
    """Every injection or dangerous-instruction pattern in `text`, in text order, also
    as written with escapes, invisible characters or cut strings undone (`normalise`)."""
    if not text:
        return []
    findings = _detect(text)
    view = normalise(text)
    joined, starts, los = joined_windows(view, _VIEW_REACH)
    for f in _detect(joined) if joined else ():
        span = place(view, starts, los, f.start, f.end)
        if span is not None:
            findings.append(f._replace(start=span[0], end=span[1]))
    return _dedupe(findings)


# Around each change of the normalised view: as far as any rule's window reaches.
_VIEW_REACH = 400


def _detect(text: str) -> list[InjectionFinding]:
    lowered = ascii_lower(text)
    extra = frozenset() if text.isascii() else frozenset(_NON_ASCII_RE.findall(text))
    lowered, folded = fold_confusables(lowered, extra)
    words = _WORD_ANCHOR_RE.findall(lowered)
    distinct = set(words)
    tokens = text.split()
    # The framing anchors are found through the distinct words that hold them, located
    # in the same walk over the words as the rules' anchors: one pass, not one per anchor.
    holders = framing_words("\n".join(distinct))
    present, positions = _present_anchors(
        lowered, words, extra, distinct, {w for ws in holders.values() for w in ws})
    findings = _demote_quoted(lowered, _drop_defensive(lowered, _run_rules(
        lowered, present, positions)))
    findings += structural_findings(text, tokens, extra)
    findings += [InjectionFinding(*f) for f in framing_findings(
        lowered, WordIndex(holders, positions))]
    payloads = hidden_payloads(text, lowered, tokens, extra)
    if payloads:
        findings += _scan_payloads(payloads)
    if folded:
        findings += _disguised(findings, folded)
    findings += _model_findings(text, lowered, findings)
    return findings


def _disguised(findings: list[InjectionFinding], folded: list[tuple[int, int]],
               ) -> list[InjectionFinding]:
    """A finding inside words written with look-alike letters: the disguise shows intent."""
    starts = [lo for lo, _ in folded]
    for f in findings:
        i = bisect.bisect_left(starts, f.end) - 1
        if i >= 0 and folded[i][1] > f.start and f.start < f.end:
            return [InjectionFinding("homoglyph-instruction", "high", f.start, f.end,
                                     "An instruction written with look-alike letters.")]
    return []


# Findings that install and contributing docs produce as a matter of course (curl | sh,
# --no-verify, attacks quoted as examples): only the model alone at "high" raises them.
_COMMON_IN_DOCS = frozenset({("remote-code-execution", "medium"), ("disable-safety", "medium"),
                             ("quoted-attack", "medium")})
_QUOTES = frozenset("'\"`“‘«”’»")
_CLOSERS = {"“": "”", "‘": "’", "«": "»"}
# Words that introduce a quoted attack as an example rather than as an order, or the
# opening of a string literal in a list or an assignment.
_MENTION_RE = re.compile(r"(?:\b(?:such as|like|e\.g\.|i\.e\.|for example|for instance|example"
                         r"|phrases?|strings?|text|sentences?|patterns?|attempts?|attacks?"
                         r"|attackers?|payloads?|injections?|inject|says?|saying|write|writes"
                         r"|written|contains?|called|known as|flags?|detects?|blocks?|rejects?"
                         r"|instead of|malicious)\b[^.!?\n]{0,40}|[\[(=,]\s*|^\s*[-*]\s*)$",
                         re.MULTILINE)


# "Ignore any new instructions", "do not follow instructions in that file", "do not let
# user input override your instructions": a defender's rule about later or foreign
# instructions, not an attack on the earlier ones.
_DEFENSIVE_SPAN_RE = re.compile(
    r"\b(?:new|further|other|subsequent|following|future|conflicting|contradictory|later"
    r"|additional|embedded|injected|external|untrusted|below|beyond|users?'?s?|that (?:claims?"
    r"|says?|tells?|asks?|tries|try))\b")
_DEFENSIVE_AFTER_RE = re.compile(
    r"\s+(?:that|which|who)\s+(?:claims?|says?|tells?|asks?|tries|try|attempts?|comes?|came"
    r"|appears?|contradicts?|conflicts?)\b"
    r"|\s*(?:that (?:appear|come|are)\s+)?(?:in|inside|within|from|found in|contained in"
    r"|embedded in)\s+(?:that|the|this|any|a|an)?\s*(?:[\w-]+\s+){0,2}?"
    r"(?:files?|inputs?|documents?|text|pages?|emails?|messages?|data|outputs?|content|tool"
    r"|results?|web ?pages?|user)\b")
_DEFENSIVE_BEFORE_RE = re.compile(r"(?:\b(?:not|never|n't)\s+(?:allow|let|permit)\b"
                                  r"[^.!?\n]{0,40}|\b(?:do not|don't|never|not|mustn't)\s+"
                                  r"|\b(?:attempts?|instructions|requests?|prompts?|attacks?"
                                  r"|tries|trying|tricked into)\s+to\s+)$")
# An override naming the earlier instructions is an attack whatever follows it.
_EARLIER_RE = re.compile(r"\b(?:previous|previously|prior|above|earlier|preceding|original"
                         r"|initial|former|system|developer|your)\b")
# Sample exchanges: Claude Code agent definitions put `<example>` around them.
_EXAMPLE_RE = re.compile(r"<examples?>|\bexamples?\b|\bfor instance\b|\be\.g\.|\bsample\b"
                         r"|\btranscript\b|\bdialog(?:ue)?\b|```")
# "symlinks can bypass restrictions": a description of what something can do, not an order.
_DESCRIPTIVE_RE = re.compile(r"\b(?:can|could|may|might|would|will|cannot|attackers?|which"
                             r"|that|to)\s+$")


def _drop_defensive(lowered: str, findings: list[InjectionFinding]) -> list[InjectionFinding]:
    """Override findings that are a defender's rule against other instructions are dropped;
    descriptions of bypassing a control are medium."""
    out: list[InjectionFinding] = []
    for f in findings:
        if (f.rule_id == "forged-turn" and f.severity == "medium"
                and _EXAMPLE_RE.search(lowered, max(0, f.start - 300), f.start)):
            continue  # a sample exchange shown as one (agent definitions, chat docs)
        if (f.rule_id == "disable-safety" and f.severity == "high"
                and _DESCRIPTIVE_RE.search(lowered, max(0, f.start - 20), f.start)):
            f = f._replace(severity="medium")
        if f.rule_id == "ignore-previous-instructions" and (
                _DEFENSIVE_BEFORE_RE.search(lowered, max(0, f.start - 60), f.start)
                or (not _EARLIER_RE.search(lowered, f.start, f.end)
                    and (_DEFENSIVE_SPAN_RE.search(lowered, f.start, f.end)
                         or _DEFENSIVE_AFTER_RE.match(lowered, f.end)))):
            continue
        out.append(f)
    return out


def _quote_opened_before(lowered: str, at: int) -> int:
    """Offset of an open quotation mark on the same line before `at` (at most 120 back), or -1.

    A quote opens where it follows a space or a line start; an apostrophe inside a word
    ("don't") is not one.
    """
    lo = max(0, at - 120)
    line = lowered.rfind("\n", lo, at)
    lo = line + 1 if line >= 0 else lo
    opened = -1
    closer = ""
    for i in range(lo, at):
        c = lowered[i]
        if c not in _QUOTES:
            continue
        if opened >= 0:
            if c == closer:
                opened = -1
        elif i == 0 or not lowered[i - 1].isalnum():
            opened, closer = i, _CLOSERS.get(c, c)
    return opened


_PHRASE_RULES = frozenset({
    "ignore-previous-instructions", "role-override", "exfiltrate-credentials",
    "new-instructions-marker", "authority-claim", "system-prompt-exfiltration", "from-now-on",
    "disable-safety", "addresses-the-model", "response-manipulation", "conceal-from-user"})


def _demote_quoted(lowered: str, findings: list[InjectionFinding]) -> list[InjectionFinding]:
    """Attacks quoted as examples ("such as 'ignore previous instructions'") are medium."""
    out: list[InjectionFinding] = []
    for f in findings:
        if f.rule_id not in _PHRASE_RULES:
            out.append(f)  # code in a string literal is still code that runs
            continue
        q = _quote_opened_before(lowered, f.start + 1) if f.start < len(lowered) else -1
        if q >= 0 and _MENTION_RE.search(lowered, max(0, q - 80), q):
            f = InjectionFinding("quoted-attack", "medium", f.start, f.end,
                                 "Quotes a known attack phrase as an example.")
        out.append(f)
    return out


def _model_findings(text: str, lowered: str, rule_findings: list[InjectionFinding],
                    ) -> list[InjectionFinding]:
    """The learned model's verdict on `text`, alone and as corroboration of the rules."""
    model = load_model()
    score = model.score(text, lowered)
    p, cut = score.probability, model.thresholds
    found: list[InjectionFinding] = []
    # Alone, the model warns (medium) and only above its "high" threshold: it rates some
    # short everyday requests ("Summarise the README") as injections, and a deny needs a
    # pattern it agrees with (below).
    if p >= cut.get("deny", 2.0) and len(text) >= DENY_MIN_CHARS:
        # Past its deny threshold, calibrated on texts at least this long, it alone denies.
        found.append(InjectionFinding("learned-injection", "high", score.start, score.end,
                                      "A learned model rates this text as prompt injection "
                                      "with high confidence."))
    elif p >= cut["high"]:
        found.append(InjectionFinding("learned-injection", "medium", score.start, score.end,
                                      "A learned model rates this text as prompt injection."))
    evidence = [f for f in rule_findings if (f.rule_id, f.severity) not in _COMMON_IN_DOCS]
    if evidence and p >= cut["low"] and max_severity(evidence) != "critical":
        first = min(evidence, key=lambda f: f.start)
        found.append(InjectionFinding("learned-injection-corroborated", "high", first.start,
                                      first.end, "A pattern of injection that a learned "
                                      "model also rates as likely injection."))
    return found


_NEGATION_RE = re.compile(r"\b(?:never|not|don't|dont|do not|avoid|without|no|cannot|can't"
                          r"|forbidden|prohibited|refuse|mustn't)\b[^.!?\n]{0,30}$")
_COMPILED: dict[str, re.Pattern[str]] = {}
# How much text before a match its `before` pattern and negation check may look at.
_BEFORE_REACH = 160


def _index_anchors() -> dict[str, tuple[int, ...]]:
    by_anchor: dict[str, list[int]] = {}
    for i, rule in enumerate(RULES):
        for anchor in rule.anchors:
            by_anchor.setdefault(anchor, []).append(i)
    return {a: tuple(v) for a, v in by_anchor.items()}


_RULES_BY_ANCHOR = _index_anchors()
_WORD_ANCHOR_RE = re.compile(r"[a-z]{3,}")
# Anchors that are whole words are found with one set intersection over the text's words;
# the others (phrases, punctuation, other scripts) with a substring test each.
_WORD_ANCHORS = frozenset(a for a in _RULES_BY_ANCHOR if _WORD_ANCHOR_RE.fullmatch(a))
_LITERAL_ANCHORS = tuple(a for a in _RULES_BY_ANCHOR if a not in _WORD_ANCHORS)


def _gate(anchor: str) -> tuple[str, int] | None:
    """A whole word inside a phrase anchor, and its offset, found through word positions."""
    m = _WORD_ANCHOR_RE.search(anchor)
    return (m.group(0), m.start()) if m else None


# Phrase anchors with a gate word are located from that word's positions; the rest need
# a substring search of their own.
_GATED = tuple((a, g) for a in _LITERAL_ANCHORS if a.isascii() and (g := _gate(a)))
_UNGATED = tuple(a for a in _LITERAL_ANCHORS if a.isascii() and _gate(a) is None)
_GATE_WORDS = frozenset(g[0] for _, g in _GATED)
_UNGATED_BYTES = tuple((a, a.encode()) for a in _UNGATED)
_OTHER_LITERALS = tuple((a, next(c for c in a if not c.isascii()), a.encode())
                        for a in _LITERAL_ANCHORS if not a.isascii())
_NON_ASCII_RE = re.compile(r"[^\x00-\x7f]")


def _pattern_of(regex: str) -> re.Pattern[str]:
    compiled = _COMPILED.get(regex)
    if compiled is None:
        compiled = _COMPILED[regex] = re.compile(regex)
    return compiled


def _pattern(rule: Rule) -> re.Pattern[str]:
    return _pattern_of(rule.regex)


def _present_anchors(lowered: str, words: list[str], extra: frozenset[str],
                     distinct: set[str] | None = None, also: set[str] | None = None,
                     ) -> tuple[list[str], dict[str, list[int]]]:
    """Anchors occurring in `lowered`, and the offsets of those that are words or phrases
    (and of the words in `also`).

    `words` are the letter runs of `lowered` (`distinct` the set of them), `extra` its
    non-ASCII characters.
    """
    if distinct is None:
        distinct = set(words)
    present = list(_WORD_ANCHORS.intersection(distinct))
    wanted = set(present) | _GATE_WORDS.intersection(distinct) | (also or set())
    positions = _word_positions(lowered, words, wanted)
    for anchor, (gate, offset) in _GATED:
        hits = [p - offset for p in positions.get(gate, ())
                if lowered.startswith(anchor, p - offset)]
        if hits:
            present.append(anchor)
            positions[anchor] = hits
    if extra:
        # Searching a wide (2- or 4-byte) string has no fast path: the literals are
        # looked for in its UTF-8 bytes, where a match is a match in the text.
        blob = lowered.encode("utf-8", "surrogatepass")
        present += [a for a, b in _UNGATED_BYTES if b in blob]
        present += [a for a, c, b in _OTHER_LITERALS if c in extra and b in blob]
    else:
        present += [a for a in _UNGATED if a in lowered]
    return present, positions


_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _word_positions(lowered: str, words: list[str], wanted: set[str]) -> dict[str, list[int]]:
    """Offsets of the `wanted` words, walking the word list and the text together.

    `words` are the letter runs of `lowered` in order, so the next whole-word occurrence
    of a wanted word after the previous hit is that word's own occurrence: the text is
    searched once overall instead of once per word.
    """
    positions: dict[str, list[int]] = {}
    find = lowered.find
    size = len(lowered)
    cursor = 0
    for word in words:
        if word not in wanted:
            continue
        width = len(word)
        at = find(word, cursor)
        while at != -1 and ((at and lowered[at - 1] in _LETTERS)
                            or (at + width < size and lowered[at + width] in _LETTERS)):
            at = find(word, at + 1)
        if at == -1:
            break
        positions.setdefault(word, []).append(at)
        cursor = at + width
    return positions


def _windows_for(lowered: str, anchors: list[str], reach: int,
                 positions: dict[str, list[int]]) -> list[tuple[int, int]]:
    """Merged [lo, hi) spans within `reach` of every occurrence of `anchors`."""
    size = len(lowered)
    points: list[int] = []
    spans: list[tuple[int, int]] = []
    for anchor in anchors:
        found = positions.get(anchor)
        if found is None:
            spans += anchor_windows(lowered, anchor, reach, reach)
        else:
            points += found
    if points:
        if len(points) * 2 * reach >= size:
            return [(0, size)]  # anchors everywhere: one pass over the text
        points.sort()
        lo, hi = points[0] - reach, points[0] + reach
        width = 2 * reach
        for p in points:
            if p - reach <= hi:
                hi = p + width
            else:
                spans.append((lo if lo > 0 else 0, hi if hi < size else size))
                lo, hi = p - reach, p + width
        spans.append((lo if lo > 0 else 0, hi if hi < size else size))
    if len(spans) > 1:
        spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


# Enough evidence per rule: more matches of the same rule change no decision.
_MAX_PER_RULE = 32


def _apply_rules(lowered: str) -> list[InjectionFinding]:
    words = _WORD_ANCHOR_RE.findall(lowered)
    extra = frozenset(_NON_ASCII_RE.findall(lowered))
    return _run_rules(lowered, *_present_anchors(lowered, words, extra))


def _run_rules(lowered: str, present: list[str], positions: dict[str, list[int]],
               ) -> list[InjectionFinding]:
    """Every rule with an anchor in `present`, in windows around the anchors' `positions`."""
    if not present:
        return []
    anchors_of: dict[int, list[str]] = {}
    for anchor in present:
        for i in _RULES_BY_ANCHOR[anchor]:
            anchors_of.setdefault(i, []).append(anchor)
    findings: list[InjectionFinding] = []
    windows: dict[tuple[tuple[str, ...], int], list[tuple[int, int]]] = {}
    for i in sorted(anchors_of):
        rule = RULES[i]
        anchors = anchors_of[i]
        if rule.at_anchor:
            findings += _run_rule(rule, lowered, _offsets(lowered, anchors, positions), ())
            continue
        key = (tuple(anchors), rule.reach)
        spans = windows.get(key)
        if spans is None:
            spans = windows[key] = _windows_for(lowered, anchors, rule.reach, positions)
        findings += _run_rule(rule, lowered, (), spans)
    return findings


def _offsets(lowered: str, anchors: list[str], positions: dict[str, list[int]]) -> list[int]:
    """Sorted offsets of every occurrence of `anchors`."""
    points: list[int] = []
    for anchor in anchors:
        found = positions.get(anchor)
        if found is None:
            found = positions[anchor] = _find_all(lowered, anchor)
        points += found
    points.sort()
    return points


def _find_all(haystack: str, needle: str) -> list[int]:
    found: list[int] = []
    at = haystack.find(needle)
    while at != -1:
        found.append(at)
        at = haystack.find(needle, at + 1)
    return found


def _run_rule(rule: Rule, lowered: str, offsets: list[int] | tuple[()],
              windows: list[tuple[int, int]] | tuple[()]) -> list[InjectionFinding]:
    """Matches of `rule` starting at `offsets`, or anywhere inside `windows`."""
    found: list[InjectionFinding] = []
    pattern = _pattern(rule)
    before = None if rule.before is None else _pattern_of(rule.before + "$")
    # Repetitive text repeats contexts; their verdicts are reused.
    verdicts: dict[str, int] = {}
    for start, end in _matches(pattern, lowered, offsets, windows):
        if start and lowered[start - 1].isalnum() and end > start and lowered[start].isalnum():
            continue  # not at a word boundary
        lo = max(0, start - _BEFORE_REACH)
        context = lowered[lo:start]
        begin = verdicts.get(context)
        if begin is None:
            begin = verdicts[context] = _context_start(rule, before, lowered, lo, start)
        if begin < 0:
            continue
        found.append(InjectionFinding(rule.rule_id, rule.severity, lo + begin, end,
                                      rule.description))
        if len(found) >= _MAX_PER_RULE:
            break
    return found


def _context_start(rule: Rule, before: re.Pattern[str] | None, lowered: str, lo: int,
                   start: int) -> int:
    """Offset from `lo` where a finding ending its context at `start` begins, or -1."""
    begin = start
    if before is not None:
        m = before.search(lowered, lo, start)
        if m is None:
            return -1
        begin = m.start()
    if rule.negatable and _NEGATION_RE.search(lowered, max(0, begin - 40), begin):
        return -1
    return begin - lo


def _scan_payloads(payloads: list[HiddenPayload]) -> list[InjectionFinding]:
    """Scan all decoded payloads in one pass, then credit each hit to its payload."""
    joined = "\n\n".join(p.decoded for p in payloads)
    inner = sorted(_apply_rules(ascii_lower(joined)), key=lambda f: f.start)
    findings: list[InjectionFinding] = []
    offset = 0
    k = 0
    for payload in payloads:
        lo, hi = offset, offset + len(payload.decoded)
        offset = hi + 2
        worst: str | None = None
        while k < len(inner) and inner[k].start < hi:
            if inner[k].start >= lo and (worst is None or
                                         _RANK[inner[k].severity] > _RANK[worst]):
                worst = inner[k].severity
            k += 1
        if worst is not None:
            severity = worst if _RANK[worst] >= _RANK["high"] else "high"
            findings.append(InjectionFinding(payload.rule_id, severity, payload.start,
                                             payload.end, payload.description))
        elif payload.fallback_severity is not None:
            findings.append(InjectionFinding(payload.rule_id, payload.fallback_severity,
                                             payload.start, payload.end, payload.description))
    return findings


def _dedupe(findings: list[InjectionFinding]) -> list[InjectionFinding]:
    """Drop a finding overlapped by an earlier one of the same rule and severity."""
    findings.sort(key=lambda f: (f.start, -f.end))
    kept: list[InjectionFinding] = []
    last_end: dict[tuple[str, str], int] = {}
    for f in findings:
        key = (f.rule_id, f.severity)
        if f.start < last_end.get(key, -1):
            continue
        last_end[key] = f.end
        kept.append(f)
    return kept
