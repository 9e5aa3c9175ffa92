"""Stock levels for a small shop."""

from .stock import reorder_list, restock, take

__all__ = ["reorder_list", "restock", "take"]
