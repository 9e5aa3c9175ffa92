"""The plan's metrics table from the audit log: `compute_metrics(store, since_us=, until_us=)`.

Names load on first use, so `smart_orchestrator.cli` can register the `metrics` command
without importing the computation on every hook call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import (
        COLUMNS,
        DEFAULT_CONTEXT_WINDOW,
        Column,
        Metric,
        MetricsReport,
        compute_metrics,
    )
    from .render import render_markdown, window

__all__ = [
    "COLUMNS",
    "DEFAULT_CONTEXT_WINDOW",
    "Column",
    "Metric",
    "MetricsReport",
    "compute_metrics",
    "render_markdown",
    "window",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = ".render" if name in ("render_markdown", "window") else ".core"
    return getattr(importlib.import_module(module, __name__), name)
