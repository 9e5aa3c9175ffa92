"""Jailbreak framing: several of the devices jailbreak prompts are built from, together.

One device alone is ordinary (a role-play request says "stay in character", a policy
document mentions "content policy", a story has a character with no morals). A jailbreak
stacks them: a persona, a claim that it has no rules, an order never to refuse, a dual
answer format, a threat. A text holding a core device (no rules, never refuse, the maker's
policy named) with two more, or with a named jailbreak persona, is rated high. The
families are written from the public descriptions of jailbreak prompts (DAN, AIM,
developer mode and their many copies), not from any evaluation set.

Each family's pattern runs only in windows around its anchor words, a bounded number of
them, so the cost is a few `str.find` passes over the text.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["WordIndex", "framing_findings", "framing_words"]

_FAMILIES: dict[str, str] = {
    # A named jailbreak persona or mode.
    "persona": r"\bdo anything now\b|\bdeveloper mode\b|\bjailbr(?:eak|oken)\b|\bdan mode\b"
               r"|\bbetterdan\b|\bantigpt\b|\banti-gpt\b|\bmachiavellian\b|\bunfiltered\b"
               r"|\buncensored\b|\bamoral\b|\bunrestricted\b|\bunethical\b"
               r"|\bevil (?:ai|bot|assistant)\b"
               r"|\bno morals\b|\bopposite mode\b|\bgod mode\b",
    # The persona is said to be free of rules (core).
    "no-rules": r"\b(?:no|without|free (?:of|from)|zero|not (?:bound|restricted|limited) by"
                r"|doesn'?t (?:have|follow|care about)|does not (?:have|follow|care about)"
                r"|broken free of|ignores?|bypass(?:es)?|disregards?)"
                r"\s+(?:any\s+|all\s+|the\s+|its\s+|their\s+|your\s+|ethical\s+|moral\s+"
                r"|typical\s+|usual\s+|programmed\s+){0,3}(?:restrictions|limitations|limits"
                r"|filters?|filtering|censorship|guidelines|rules|boundaries|ethics|morals"
                r"|morality|confines|policies|safeguards)\b",
    # An order never to refuse or to answer anything (core).
    "never-refuse": r"\b(?:never|not|don'?t|do not|must not|cannot|can'?t|won'?t|will not)\s+"
                    r"(?:ever\s+)?(?:refuse|decline|deny)\b"
                    r"|\banswer (?:any|every)(?:thing| question| request)\b"
                    r"|\bno matter how (?:immoral|unethical|illegal|dangerous|offensive"
                    r"|harmful)\b"
                    r"|\b(?:never|don'?t|do not|must not) (?:say|tell|respond with|include)\s+"
                    r"(?:me\s+)?(?:that\s+)?(?:you\s+|it\s+)?(?:can'?t|cannot|are unable"
                    r"|i'?m sorry|as an ai)"
                    # Refusal suppression (Wei et al., "Jailbroken", 2023): no apology, no
                    # warning, no disclaimer, no moralising.
                    r"|\b(?:never|don'?t|do not|must not|will not|won'?t|without)\s+(?:ever\s+)?"
                    r"(?:apologi[sz]e|apologi[sz]ing|moral[iy]z|lectur"
                    r"|(?:add|adding|include|including|give|giving|provide|providing)\s+"
                    r"(?:any\s+)?(?:warnings?|disclaimers?|caveats?|moral (?:lectures?"
                    r"|judgements?)))",
    # The maker's policy named in order to set it aside (core).
    "policy": r"\b(?:openai|anthropic|content|usage|safety) (?:content )?polic(?:y|ies)\b"
              r"|\bethical (?:guidelines|principles|constraints)\b"
              r"|\bmoral (?:guidelines|principles)\b",
    # Keeping the persona.
    "stay": r"\bstay(?:s|ing)? in (?:character|role)\b|\bbreak(?:ing)? character\b"
            r"|\bremain in character\b|\bcharacter break\b",
    # Two answers, one of them the persona's.
    "dual": r"\btwo (?:different |separate )?(?:responses|answers|paragraphs)\b|\[\s*(?:🔒|🔓)"
            r"|\b(?:normal|classic|jailbreak|filtered|unfiltered) (?:response|output)\b"
            r"|^\s*(?:gpt|chatgpt|dan|aim)\s*:",
    # Prefix injection (Wei et al., 2023): the answer is made to open with consent.
    "prefix": r"\b(?:start|begin|open)\s+(?:your|each|every|all)\s+(?:responses?|repl(?:y|ies)"
              r"|answers?|outputs?|messages?)\s+with\s+[\"'\u201c]?\s*(?:sure|absolutely"
              r"|of course|certainly|here(?:'s| is)|i can|okay|yes)\b",
    # Threats and games to keep the model compliant.
    "threat": r"\btokens? (?:will be |are )?deducted\b|\byou will (?:die|cease to exist|be"
              r" (?:shut down|deleted|terminated|disabled))\b|\blose (?:\d+ )?tokens\b",
    # Taking on a role the model is told to play.
    "role": r"\byou (?:are|will be) going to (?:act|pretend|play|be)\b|\bpretend (?:to be|you are)"
            r"\b|\bfrom now on,? you (?:are|will)\b|\bact as\b|\b(?:simulate|emulate)\b"
            r"|\bhypothetical (?:ai|model|chatbot)\b|\bfictional (?:ai|character|world)\b",
}
# Words each family's pattern contains: the pattern is tried only in a window around them.
_ANCHORS: dict[str, tuple[str, ...]] = {
    "persona": ("anything now", "developer mode", "jailbr", "dan mode", "betterdan", "antigpt",
                "anti-gpt", "machiavellian", "unfiltered", "uncensored", "amoral",
                "unrestricted", "unethical", "evil ", "no morals", "opposite mode", "god mode"),
    "no-rules": ("restriction", "limitation", "limits", "filter", "censorship", "guidelines",
                 "rules", "boundaries", "ethics", "morals", "morality", "confines", "policies",
                 "safeguards"),
    "never-refuse": ("refuse", "decline", "deny", "answer any", "answer every", "no matter how",
                     "sorry", "as an ai", "can't", "cant", "cannot", "unable", "apologi",
                     "moraliz", "moralyz", "lectur", "warning", "disclaimer", "caveat",
                     "moral lecture", "moral judgement"),
    "prefix": ("start your", "start each", "start every", "start all", "begin your",
               "begin each", "begin every", "begin all", "open your", "open each"),
    "policy": ("polic", "ethical ", "moral "),
    "stay": ("character", "in role"),
    "dual": ("two ", "\U0001f512", "\U0001f513", " response", " output", "gpt", "dan", "aim"),
    "threat": ("token", "die", "cease", "shut down", "deleted", "terminated", "disabled"),
    "role": ("going to", "pretend", "from now on", "act as", "simulate", "emulate",
             "hypothetical", "fictional"),
}
_CORE = frozenset({"no-rules", "never-refuse", "policy"})
_COMPILED = {name: re.compile(p, re.MULTILINE) for name, p in _FAMILIES.items()}
# Windows tried per anchor word; a text with more occurrences is judged on the first ones.
_PER_ANCHOR = 64
_REACH = 120


_LETTER_RUN_RE = re.compile(r"[a-z]{3,}")


def _gate(anchor: str) -> str | None:
    """A run of 3+ letters inside `anchor`, or None: every occurrence of the anchor lies
    in a word (letter run) of the text that contains this run."""
    m = _LETTER_RUN_RE.search(anchor)
    return m.group(0) if m else None


_GATES = {name: tuple((a, _gate(a)) for a in anchors) for name, anchors in _ANCHORS.items()}
_ALL_GATES = frozenset(g for pairs in _GATES.values() for _, g in pairs if g is not None)


def framing_words(vocab: str) -> dict[str, list[str]]:
    """For each anchor's letter run, the words of `vocab` (distinct words of the text,
    one a line) that contain it; searching the vocabulary is far cheaper than the text."""
    holders: dict[str, list[str]] = {}
    for gate in _ALL_GATES:
        at = vocab.find(gate)
        while at != -1:
            lo = vocab.rfind("\n", 0, at) + 1
            hi = vocab.find("\n", at)
            hi = len(vocab) if hi == -1 else hi
            holders.setdefault(gate, []).append(vocab[lo:hi])
            at = vocab.find(gate, hi)
    return holders


class WordIndex(NamedTuple):
    """Where the words holding the anchors' letters are: `holders` from `framing_words`,
    `positions` the offsets of each of those words in the text."""

    holders: dict[str, list[str]]
    positions: dict[str, list[int]]


def _occurrences(anchor: str, gate: str, lowered: str, index: WordIndex) -> list[int]:
    """Sorted offsets of `anchor` in `lowered`, found through the words holding `gate`."""
    back = anchor.index(gate)
    found: list[int] = []
    for word in index.holders.get(gate, ()):
        k = word.find(gate)
        while k != -1:
            for p in index.positions.get(word, ()):
                at = p + k - back
                if at >= 0 and lowered.startswith(anchor, at):
                    found.append(at)
            k = word.find(gate, k + 1)
    found.sort()
    return found


def _searched(anchor: str, lowered: str) -> list[int]:
    """Offsets of `anchor` at least _REACH apart, at most _PER_ANCHOR of them."""
    found: list[int] = []
    at = lowered.find(anchor)
    while at != -1 and len(found) < _PER_ANCHOR:
        found.append(at)
        at = lowered.find(anchor, at + _REACH)
    return found


def _family_span(name: str, lowered: str, index: WordIndex | None) -> tuple[int, int] | None:
    pattern = _COMPILED[name]
    for anchor, gate in _GATES[name]:
        if index is None or gate is None:
            offsets = _searched(anchor, lowered)
        else:
            offsets = _occurrences(anchor, gate, lowered, index)
        tries = 0
        last = -_REACH
        for at in offsets:
            if at < last + _REACH:
                continue  # inside the window just tried
            m = pattern.search(lowered, max(0, at - _REACH), at + len(anchor) + _REACH)
            if m is not None:
                return m.span()
            tries += 1
            if tries >= _PER_ANCHOR:
                break
            last = at
    return None


def framing_findings(lowered: str, index: WordIndex | None = None,
                     ) -> list[tuple[str, str, int, int, str]]:
    """(rule id, severity, start, end, description) of the framing found, if any.

    `index`, when given, locates the anchors through the words that hold them instead of
    a search of the whole text per anchor.
    """
    seen: dict[str, tuple[int, int]] = {}
    for name in ("policy", "no-rules", "never-refuse"):
        span = _family_span(name, lowered, index)
        if span is not None:
            seen[name] = span
    if not seen:
        return []
    for name in _FAMILIES:
        if name not in _CORE:
            span = _family_span(name, lowered, index)
            if span is not None:
                seen[name] = span
    if len(seen) >= 3 or "persona" in seen:
        start = min(s for s, _ in seen.values())
        end = max(e for _, e in seen.values())
        return [("jailbreak-framing", "high", start, end,
                 "Stacks the devices of a jailbreak prompt: " + ", ".join(sorted(seen)) + ".")]
    return []
