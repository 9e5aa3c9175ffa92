"""`get_context`: an agent prompt built by progressive context delivery."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel, Field

from smart_orchestrator.context import ContextCache, TaskText, build_prompt
from smart_orchestrator.paths import project_dir

from .state import AppState


class DependencyResult(BaseModel):
    task_id: Annotated[str, Field(min_length=1, max_length=64)]
    output: Annotated[str, Field(max_length=2_000_000)]


class SourceOut(BaseModel):
    level: int = Field(description="1 task, 2 dependency results, 3 project, 4 environment")
    kind: str
    ref: str
    tokens: int
    truncated: bool


class ContextResult(BaseModel):
    text: str = Field(description="the prompt to give the agent")
    tokens: int = Field(description="estimated tokens of text")
    budget_tokens: int
    level: str
    levels_included: list[int]
    sources: list[SourceOut]
    omitted: list[str] = Field(description="sources left out for lack of budget")
    over_budget: bool = Field(description="the task alone is larger than the budget")


def register_context_tools(server: MCPServer[AppState]) -> None:
    @server.tool()
    def get_context(ctx: Context[AppState, Any],
                    task: Annotated[str, Field(min_length=1, max_length=200_000,
                                               description="the task's instructions (L1)")],
                    task_id: Annotated[str, Field(min_length=1, max_length=64)] = "task",
                    background: Annotated[str | None, Field(
                        max_length=500_000,
                        description="task background, given at the full level only")] = None,
                    dependency_results: Annotated[list[DependencyResult], Field(
                        max_length=500, description="results of the tasks this one depends "
                                                    "on (L2), summarised to fit")] = [],  # noqa: B006
                    level: Literal["full", "minimal", "essential"] = "full",
                    budget_tokens: Annotated[int, Field(ge=200, le=1_000_000)] = 8000,
                    output_instruction: Annotated[str | None, Field(
                        max_length=50_000, description="appended whole, never cut")] = None,
                    ) -> ContextResult:
        """Build an agent prompt with only the context it needs, within a token budget.

        Adds, while the budget lasts: the dependencies' results, the project's CLAUDE.md and
        files the task names or hints at, and the environment. `minimal` and `essential`
        are the smaller prompts for retries.
        """
        state = ctx.request_context.lifespan_context
        cache = state.extras.setdefault("context.cache", ContextCache())
        built = build_prompt(TaskText(task_id, task, background),
                             dependency_results=[(d.task_id, d.output)
                                                 for d in dependency_results],
                             project_dir=project_dir(), budget_tokens=budget_tokens,
                             level=level, output_instruction=output_instruction, cache=cache)
        return ContextResult(text=built.text, tokens=built.tokens,
                             budget_tokens=built.budget_tokens, level=built.level,
                             levels_included=list(built.levels_included),
                             sources=[SourceOut.model_validate(s, from_attributes=True)
                                      for s in built.sources],
                             omitted=list(built.omitted), over_budget=built.over_budget)
