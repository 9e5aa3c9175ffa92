"""Budgets: a token and dollar ledger, caps, estimates, and the shared rate-limit gate."""

from __future__ import annotations

from .ledger import CAPS, Breach, Budget, Estimate, Reservation, task_kind
from .pricing import PRICES_AS_OF, Price, Tokens, cost_usd, price_for
from .usage import tokens_from_usage, transcript_usage

__all__ = [
    "CAPS",
    "PRICES_AS_OF",
    "Breach",
    "Budget",
    "Estimate",
    "Price",
    "Reservation",
    "Tokens",
    "cost_usd",
    "price_for",
    "task_kind",
    "tokens_from_usage",
    "transcript_usage",
]
