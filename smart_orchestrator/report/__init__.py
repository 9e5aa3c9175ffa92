"""Reports about runs for people: Markdown tables for chats and terminals, and one
self-contained HTML page per wave (`smart-orchestrator report RUN_ID`)."""

from __future__ import annotations

from .data import RunData, latest_run_id, list_wave_runs, load_run, wave_snapshot
from .html import STATE_COLOURS, render_html

__all__ = [
    "STATE_COLOURS",
    "RunData",
    "latest_run_id",
    "list_wave_runs",
    "load_run",
    "render_html",
    "wave_snapshot",
]
