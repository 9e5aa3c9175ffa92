"""Dollar prices per model family, in one place.

Source: Anthropic's published API prices (https://www.anthropic.com/pricing and
https://docs.anthropic.com/en/docs/about-claude/pricing) as read on PRICES_AS_OF. Cache
writes are priced at the 5-minute rate (1.25x input), cache reads at 0.1x input. A model
no family matches is priced at the dearest family's rates and named `unknown:<model>`, so
a cap errs towards stopping early, never late.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["PRICES_AS_OF", "Price", "Tokens", "cost_usd", "price_for"]

PRICES_AS_OF = "2025-11-24"


class Price(NamedTuple):
    """US dollars per million tokens."""

    input: float
    output: float
    cache_read: float
    cache_write: float


class Tokens(NamedTuple):
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: object) -> Tokens:
        if not isinstance(other, Tokens):
            return NotImplemented
        return Tokens(*(a + b for a, b in zip(self, other, strict=True)))


_OPUS_4 = Price(15.0, 75.0, 1.50, 18.75)
# Most specific first; matched against the lower-cased model name or alias.
_FAMILIES: tuple[tuple[re.Pattern[str], str, Price], ...] = tuple(
    (re.compile(pattern), family, price) for pattern, family, price in (
        (r"opus-4-[5-9]|opus-4\.[5-9]", "opus-4.5", Price(5.0, 25.0, 0.50, 6.25)),
        (r"opus", "opus-4", _OPUS_4),
        (r"sonnet", "sonnet-4", Price(3.0, 15.0, 0.30, 3.75)),
        (r"haiku-4|haiku-[5-9]", "haiku-4.5", Price(1.0, 5.0, 0.10, 1.25)),
        (r"3-5-haiku|haiku-3-5|3\.5-haiku", "haiku-3.5", Price(0.80, 4.0, 0.08, 1.0)),
        (r"3-haiku|haiku-3", "haiku-3", Price(0.25, 1.25, 0.03, 0.30)),
        # The bare alias names the current Haiku.
        (r"^haiku$", "haiku-4.5", Price(1.0, 5.0, 0.10, 1.25)),
    ))


def price_for(model: str) -> tuple[Price, str]:
    """(price, how it was priced): `table:<family>` or `unknown:<model>`."""
    name = model.strip().lower()
    for pattern, family, price in _FAMILIES:
        if pattern.search(name):
            return price, f"table:{family}"
    return _OPUS_4, f"unknown:{name[:60] or 'unnamed'}"


def cost_usd(tokens: Tokens, model: str) -> tuple[float, str]:
    price, priced = price_for(model)
    usd = (tokens.input * price.input + tokens.output * price.output
           + tokens.cache_read * price.cache_read
           + tokens.cache_write * price.cache_write) / 1_000_000
    return round(usd, 6), priced
