"""The prompt each attempt sends: full context first, then less, then the essentials.

Attempt 1 gets the task's context and its dependencies' results in full; attempt 2 gets
only the dependencies' results, shortened; attempt 3 gets the task itself and nothing
else. When a failure came from too much context, or from a detail in it, the next try has
a better chance; when a task has no context to drop, every attempt sends the same prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum

from .contracts import schema_instruction
from .plan import PromptCompensation, TaskSpec

__all__ = ["ContextLevel", "build_prompt", "compensation_prompt", "level_for_attempt"]

FULL_RESULT_CHARS = 20_000
MINIMAL_RESULT_CHARS = 1_000


class ContextLevel(IntEnum):
    FULL = 0
    MINIMAL = 1
    ESSENTIAL = 2

    @property
    def label(self) -> str:
        return self.name.lower()


def level_for_attempt(attempt: int) -> ContextLevel:
    """`attempt` counts from 1 within one drive of the task."""
    return ContextLevel(min(max(attempt - 1, 0), ContextLevel.ESSENTIAL))


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters omitted]"


def build_prompt(task: TaskSpec, dependency_results: Sequence[tuple[str, str]],
                 level: ContextLevel) -> str:
    parts = [task.prompt]
    if level == ContextLevel.FULL and task.context:
        parts.append("Context:\n" + task.context)
    if level < ContextLevel.ESSENTIAL and dependency_results:
        limit = FULL_RESULT_CHARS if level == ContextLevel.FULL else MINIMAL_RESULT_CHARS
        results = "\n\n".join(f"### {dep}\n{_clip(out, limit)}"
                              for dep, out in dependency_results)
        parts.append("Results of the tasks this one depends on:\n\n" + results)
    if task.output_schema is not None:
        parts.append(schema_instruction(task.output_schema))
    return "\n\n".join(parts)


def compensation_prompt(task: TaskSpec, spec: PromptCompensation, output: str | None) -> str:
    parts = [spec.prompt, "This undoes an earlier task whose instructions were:\n" + task.prompt]
    if output:
        parts.append("That task's result was:\n" + _clip(output, MINIMAL_RESULT_CHARS))
    return "\n\n".join(parts)
