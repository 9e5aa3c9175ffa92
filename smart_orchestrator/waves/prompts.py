"""The prompt each attempt sends: full context first, then less, then the essentials.

Prompts come from progressive context delivery (`smart_orchestrator.context`): the task,
its dependencies' results, the project (CLAUDE.md, files the task names or hints at) and
the environment, within the task's token budget. Attempt 1 asks for the `full` level,
attempt 2 for `minimal` (short dependency summaries, the named files), attempt 3 and later
for `essential` (the task and a few lines of each dependency's result). When a failure
came from too much context, or from a detail in it, the next try has a better chance.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from pathlib import Path

from ..context import BuiltPrompt, ContextCache
from ..context import ContextLevel as LevelName
from ..context import build_prompt as build_context
from .contracts import schema_instruction
from .plan import PromptCompensation, TaskSpec

__all__ = ["ContextLevel", "build_prompt", "compensation_prompt", "level_for_attempt"]

MINIMAL_RESULT_CHARS = 1_000


class ContextLevel(IntEnum):
    FULL = 0
    MINIMAL = 1
    ESSENTIAL = 2

    @property
    def label(self) -> LevelName:
        return _LABELS[self]


_LABELS: dict[ContextLevel, LevelName] = {ContextLevel.FULL: "full",
                                          ContextLevel.MINIMAL: "minimal",
                                          ContextLevel.ESSENTIAL: "essential"}


def level_for_attempt(attempt: int) -> ContextLevel:
    """`attempt` counts from 1 within one drive of the task."""
    return ContextLevel(min(max(attempt - 1, 0), ContextLevel.ESSENTIAL))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters omitted]"


def build_prompt(task: TaskSpec, dependency_results: Sequence[tuple[str, str]],
                 level: ContextLevel, *, project_dir: Path | None = None,
                 cache: ContextCache | None = None) -> BuiltPrompt:
    """The attempt's prompt. The task's prompt and its output-schema instruction are
    never cut; the rest fits in `task.context_tokens`."""
    instruction = (schema_instruction(task.output_schema)
                   if task.output_schema is not None else None)
    return build_context(task, dependency_results=dependency_results,
                         project_dir=project_dir, budget_tokens=task.context_tokens,
                         level=level.label, output_instruction=instruction, cache=cache)


def compensation_prompt(task: TaskSpec, spec: PromptCompensation, output: str | None) -> str:
    parts = [spec.prompt, "This undoes an earlier task whose instructions were:\n" + task.prompt]
    if output:
        parts.append("That task's result was:\n" + _clip(output, MINIMAL_RESULT_CHARS))
    return "\n\n".join(parts)
