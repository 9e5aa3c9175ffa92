"""The wave plan: a validated model of tasks and their dependency graph.

Every `WavePlan` instance is valid: ids are unique, every dependency names a task of the
plan, the graph has no cycle (the error spells the cycle out), and each output schema is
itself a valid JSON Schema.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..context.builder import DEFAULT_BUDGET_TOKENS

__all__ = [
    "AgentSpec",
    "CommandCompensation",
    "PromptCompensation",
    "TaskSpec",
    "WavePlan",
    "dependency_levels",
]

_DOMAIN = r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)*[A-Za-z0-9-]{1,63}$"
TaskId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                              description="unique task id")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgentSpec(_Strict):
    """Who runs a task. `name` is the agent type the circuit breaker counts failures by."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")] = "general"
    system_prompt: Annotated[str | None, Field(max_length=100_000)] = None
    model: Annotated[str | None, Field(max_length=200)] = None


class CommandCompensation(_Strict):
    """Undo a task by running a program (argv, no shell) in the wave's working directory."""

    command: Annotated[list[Annotated[str, Field(max_length=4096)]],
                       Field(min_length=1, max_length=256)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class PromptCompensation(_Strict):
    """Undo a task by asking an agent of the same definition to do it."""

    prompt: Annotated[str, Field(min_length=1, max_length=100_000)]
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 300.0


class TaskSpec(_Strict):
    id: TaskId
    prompt: Annotated[str, Field(min_length=1, max_length=200_000)]
    depends_on: Annotated[list[TaskId], Field(max_length=500)] = []
    context: Annotated[str | None, Field(
        max_length=500_000,
        description="background given on the first attempt only")] = None
    context_tokens: Annotated[int, Field(
        ge=200, le=1_000_000,
        description="token budget for the context added to the prompt (dependency results, "
                    "project files, environment); the prompt itself is never cut")
    ] = DEFAULT_BUDGET_TOKENS
    agent: AgentSpec = AgentSpec()
    allowed_tools: Annotated[list[Annotated[str, Field(min_length=1, max_length=500)]],
                             Field(max_length=200)] = []
    network_domains: Annotated[list[Annotated[str, Field(pattern=_DOMAIN)]], Field(
        max_length=100, description="domains the task's Bash commands may reach (e.g. "
                                    "registry.npmjs.org, *.pythonhosted.org) while the Bash "
                                    "sandbox confines them; none by default")] = []
    output_schema: dict[str, Any] | None = Field(
        default=None, description="JSON Schema the task's final answer must satisfy")
    timeout_s: Annotated[float, Field(gt=0, le=86_400)] = 600.0
    max_turns: Annotated[int | None, Field(ge=1, le=1000)] = None
    budget_usd: Annotated[float | None, Field(gt=0, le=10_000)] = None
    priority: Annotated[int, Field(ge=-1000, le=1000,
                                   description="higher starts first among ready tasks")] = 0
    compensate: CommandCompensation | PromptCompensation | None = None

    @field_validator("depends_on")
    @classmethod
    def _no_repeats(cls, deps: list[str]) -> list[str]:
        if len(set(deps)) != len(deps):
            raise ValueError("depends_on lists a task more than once")
        return deps

    @field_validator("output_schema")
    @classmethod
    def _schema_is_valid(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            try:
                validator_for(schema).check_schema(schema)
            except SchemaError as exc:
                raise ValueError(f"output_schema is not a valid JSON Schema: "
                                 f"{exc.message}") from exc
        return schema

    @property
    def agent_type(self) -> str:
        return self.agent.name


class WavePlan(_Strict):
    name: Annotated[str | None, Field(max_length=200)] = None
    tasks: Annotated[list[TaskSpec], Field(min_length=1, max_length=500)]
    on_failure: Literal["continue", "compensate"] = Field(
        default="continue",
        description="continue: independent tasks go on and the wave may end partial; "
                    "compensate: the first failure stops the wave and undoes completed tasks")
    workspace: Literal["auto", "worktree", "shared"] = Field(
        default="auto",
        description="worktree: each task in a git worktree of its own, branched from the "
                    "project's HEAD (or `remote`) and merged back into a result branch; "
                    "shared: every task in the project folder; auto: worktree when the "
                    "project is a git repository with a commit, else shared")
    remote: Annotated[str | None, Field(
        max_length=2000, pattern=r"^(https://|ssh://|git@[\w.-]+:|file://|/)[^\s]*$",
        description="a git repository (URL or absolute path) the wave branches from and "
                    "pushes its branches to, instead of the project's HEAD")] = None
    gates: bool = Field(default=True, description="run the quality gates on the merged "
                                                  "result of a worktree wave")

    @model_validator(mode="after")
    def _graph_is_sound(self) -> WavePlan:
        check_graph({t.id: t.depends_on for t in self.tasks}, [t.id for t in self.tasks])
        return self

    def task(self, task_id: str) -> TaskSpec:
        for t in self.tasks:
            if t.id == task_id:
                return t
        raise KeyError(task_id)

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {t.id: [] for t in self.tasks}
        for t in self.tasks:
            for dep in t.depends_on:
                out[dep].append(t.id)
        return out


def check_graph(deps: Mapping[str, Sequence[str]], order: Sequence[str]) -> None:
    """Raise ValueError naming duplicate ids, unknown dependencies or a cycle."""
    seen: set[str] = set()
    for task_id in order:
        if task_id in seen:
            raise ValueError(f"task id {task_id!r} is used more than once")
        seen.add(task_id)
    for task_id in order:
        unknown = [d for d in deps[task_id] if d not in seen]
        if unknown:
            names = ", ".join(repr(u) for u in unknown)
            raise ValueError(f"task {task_id!r} depends on unknown task(s) {names}")
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the tasks that depend on it; reversed, each
        # task is followed by the one it depends on, which is how a person reads it.
        cycle = list(reversed(exc.args[1]))
        raise ValueError("dependency cycle: " + " -> ".join(cycle)
                         + " (each task depends on the next)") from None


def dependency_levels(plan: WavePlan) -> list[list[str]]:
    """The plan's waves: each level holds tasks whose dependencies are all in earlier ones."""
    sorter = graphlib.TopologicalSorter({t.id: t.depends_on for t in plan.tasks})
    sorter.prepare()
    position = {t.id: i for i, t in enumerate(plan.tasks)}
    levels: list[list[str]] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        levels.append(ready)
        sorter.done(*ready)
    return levels
