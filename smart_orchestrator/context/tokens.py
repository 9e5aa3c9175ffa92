"""Token estimates and clipping, without a tokenizer.

English text and code run at about four characters per token; other scripts nearer one
token per character. Counting ASCII characters at 1/4 and the rest at 1 keeps the estimate
on the high side, so a prompt built to a budget stays within it.
"""

from __future__ import annotations

__all__ = ["clip_to_tokens", "estimate_tokens"]


def estimate_tokens(text: str) -> int:
    if not text:
        return 0
    ascii_chars = len(text.encode("ascii", "ignore"))
    return -(-ascii_chars // 4) + (len(text) - ascii_chars)


def clip_to_tokens(text: str, max_tokens: int, *, head: float = 1.0) -> tuple[str, bool]:
    """`text` cut at line boundaries to fit `max_tokens`, with a marker saying what went.

    `head` is the share kept from the start; the rest comes from the end (results often
    put their conclusion last). Returns (text, truncated).
    """
    if estimate_tokens(text) <= max_tokens:
        return text, False
    if max_tokens <= 0:
        return "", True
    lines = text.splitlines()
    budget = max(0, max_tokens - 12)  # room for the marker
    head_budget = int(budget * head)
    top, used = _take(lines, head_budget)
    bottom, _ = _take(list(reversed(lines[len(top):])), budget - used)
    bottom.reverse()
    omitted = len(lines) - len(top) - len(bottom)
    if not top and not bottom:  # one very long line: cut by characters
        chars = max(0, budget * 4 if text.isascii() else budget)
        return text[:chars] + f"\n[... {len(text) - chars} more characters omitted]", True
    marker = f"[... {omitted} line(s) omitted ...]"
    return "\n".join([*top, marker, *bottom]), True


def _take(lines: list[str], budget: int) -> tuple[list[str], int]:
    taken: list[str] = []
    used = 0
    for line in lines:
        cost = estimate_tokens(line) + 1  # the newline
        if used + cost > budget:
            break
        taken.append(line)
        used += cost
    return taken, used
