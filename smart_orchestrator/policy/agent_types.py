"""One spelling per agent type, so limits and breakers cannot be dodged by re-spelling it.

Claude Code resolves `subagent_type` loosely, while leases, depth look-ups and breakers
compare strings: `General-Purpose`, `general_purpose`, `GENERAL PURPOSE`, a zero-width
space or a Cyrillic `е` inside the name would each otherwise count as a type of its own.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["DEFAULT_AGENT_TYPE", "canonical_agent_type"]

DEFAULT_AGENT_TYPE = "general-purpose"

# Letters that render like Latin ones (NFKC leaves them alone).
_LOOKALIKES = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "у": "y", "х": "x", "і": "i",
    "ј": "j", "ѕ": "s", "ԁ": "d", "ӏ": "l", "һ": "h", "ԛ": "q", "ԝ": "w", "ɡ": "g",
    "α": "a", "ε": "e", "ο": "o", "ρ": "p", "τ": "t", "ι": "i", "κ": "k", "ν": "v",
    "υ": "u", "χ": "x", "ı": "i",
})
_SEPARATORS = re.compile(r"[\s\-_.·/\\:]+")


def canonical_agent_type(value: str | None) -> str:
    """Case-folded, without separators, invisible characters or lookalike letters.

    Separators go entirely (`ex_plore` is `explore`): two names that differ only in them
    sharing one breaker is the safe side of the mistake."""
    if not value:
        value = DEFAULT_AGENT_TYPE
    text = unicodedata.normalize("NFKC", value)
    text = "".join(" " if unicodedata.category(ch) in ("Pd", "Zs", "Zl", "Zp") else ch
                   for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Mn"))
    text = text.casefold().translate(_LOOKALIKES)
    text = _SEPARATORS.sub("", text)
    return text or canonical_agent_type(DEFAULT_AGENT_TYPE)
