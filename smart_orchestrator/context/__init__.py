"""Progressive context: each agent gets the task, then only as much of its dependencies'
results, the project and the environment as its token budget allows.

    from smart_orchestrator.context import ContextCache, build_prompt
    built = build_prompt(task, dependency_results=[("t1", out)], project_dir=root,
                         budget_tokens=8000, level="full", cache=cache)
    built.text, built.tokens, built.levels_included, built.sources
"""

from __future__ import annotations

from .builder import (
    DEFAULT_BUDGET_TOKENS,
    BuiltPrompt,
    ContextLevel,
    ContextTask,
    Source,
    SourceKind,
    TaskText,
    build_prompt,
)
from .cache import ContextCache
from .tokens import clip_to_tokens, estimate_tokens

__all__ = [
    "DEFAULT_BUDGET_TOKENS",
    "BuiltPrompt",
    "ContextCache",
    "ContextLevel",
    "ContextTask",
    "Source",
    "SourceKind",
    "TaskText",
    "build_prompt",
    "clip_to_tokens",
    "estimate_tokens",
]
