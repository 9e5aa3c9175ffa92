"""Stock changes. Quantities never go below zero."""

from __future__ import annotations


def take(stock: dict[str, int], item: str, quantity: int) -> dict[str, int]:
    """Remove `quantity` of `item`; refuse to sell what is not there."""
    have = stock.get(item, 0)
    if quantity > have:
        raise ValueError(f"only {have} {item} left")
    return {**stock, item: have - quantity}


def restock(stock: dict[str, int], item: str, quantity: int) -> dict[str, int]:
    if quantity <= 0:
        raise ValueError("restock a positive quantity")
    return {**stock, item: stock.get(item, 0) + quantity}


def reorder_list(stock: dict[str, int], minimum: int = 5) -> list[str]:
    """Items at or below `minimum`, by name."""
    return sorted(item for item, count in stock.items() if count <= minimum)
