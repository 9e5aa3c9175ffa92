"""The offline demo: the real Claude Code with this plugin, against a bundled scripted model.

`run_demo()` is what `smart-orchestrator demo` runs; see docs/demo.md.
"""

from __future__ import annotations

from .runner import run_demo

__all__ = ["run_demo"]
