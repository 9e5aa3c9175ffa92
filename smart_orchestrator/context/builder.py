"""Building one agent's prompt from four levels of context, within a token budget.

L1 is the task (its prompt always whole; its background at the full level), L2 the results
of the tasks it depends on, L3 the project (CLAUDE.md, files the task names or hints at),
L4 the environment. Each level is loaded only when the one before it left budget, and the
retry path asks for less: `minimal` keeps L1, short L2 summaries, the named files and the
best hinted one; `essential` keeps L1 and a few lines of each dependency's result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from .cache import ContextCache
from .sources import (
    FileRef,
    environment_summary,
    hinted_files,
    memory_files,
    named_files,
    read_project_file,
)
from .tokens import clip_to_tokens, estimate_tokens

__all__ = ["DEFAULT_BUDGET_TOKENS", "BuiltPrompt", "ContextLevel", "ContextTask", "Source",
           "SourceKind", "TaskText", "build_prompt"]

ContextLevel = Literal["full", "minimal", "essential"]
SourceKind = Literal["task", "background", "dependency", "memory", "named", "hinted",
                     "environment", "output"]
DEFAULT_BUDGET_TOKENS = 8000
_BACKTICKS = re.compile(r"`+")
_MIN_USEFUL = 48  # below this, a file excerpt is noise: leave the file out instead


class ContextTask(Protocol):
    """What the builder reads of a task; a wave's `TaskSpec` fits as is."""

    @property
    def id(self) -> str: ...

    @property
    def prompt(self) -> str: ...

    @property
    def context(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class TaskText:
    id: str
    prompt: str
    context: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    level: int
    kind: SourceKind
    ref: str
    tokens: int
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class BuiltPrompt:
    text: str
    tokens: int
    budget_tokens: int
    level: ContextLevel
    levels_included: tuple[int, ...]
    sources: tuple[Source, ...]
    omitted: tuple[str, ...]   # sources left out for lack of budget
    over_budget: bool          # the task itself is larger than the budget


@dataclass(frozen=True, slots=True)
class _Plan:
    budget: float              # share of the budget this level may use at all
    background: float          # share of the free budget for the task's background
    deps: float                # share of the free budget for dependency results
    dep_cap: int | None        # tokens per dependency result at most
    memory: bool
    named: bool
    hinted: int                # how many hinted files at most
    environment: bool


_PLANS: dict[str, _Plan] = {
    "full": _Plan(1.0, 0.25, 0.5, None, True, True, 5, True),
    "minimal": _Plan(0.5, 0.0, 0.35, 400, False, True, 1, False),
    "essential": _Plan(0.25, 0.0, 0.2, 80, False, False, 0, False),
}


@dataclass(slots=True)
class _Part:
    section: str
    title: str
    body: str
    source: Source
    fenced: bool = False

    def render(self) -> str:
        if not self.fenced:
            return f"### {self.title}\n{self.body}" if self.title else self.body
        fence = "`" * max(3, _longest_backtick_run(self.body) + 1)
        return f"### {self.title}\n{fence}\n{self.body}\n{fence}"


def build_prompt(task: ContextTask, *,
                 dependency_results: Mapping[str, str] | Sequence[tuple[str, str]] = (),
                 project_dir: Path | None = None,
                 budget_tokens: int = DEFAULT_BUDGET_TOKENS,
                 level: ContextLevel = "full",
                 output_instruction: str | None = None,
                 cache: ContextCache | None = None) -> BuiltPrompt:
    """The prompt for one agent. The task's prompt and `output_instruction` are never cut;
    everything else is fitted into what they leave of `budget_tokens`."""
    plan = _PLANS[level]
    cache = cache or ContextCache()
    b = _Builder(budget_tokens)
    b.fixed(task.prompt, Source(1, "task", task.id, estimate_tokens(task.prompt)))
    if output_instruction:
        b.reserve(output_instruction)
    # A retry level uses a fraction of the budget, so each attempt is smaller than the last.
    b.left -= int(budget_tokens * (1 - plan.budget))
    free = max(b.left, 0)
    if plan.background and task.context:
        b.add("Background", "", task.context, 1, "background", task.id,
              int(free * plan.background), head=1.0)
    deps = list(dependency_results.items() if isinstance(dependency_results, Mapping)
                else dependency_results)
    if deps:
        _add_dependencies(b, deps, int(free * plan.deps), plan.dep_cap)
    if project_dir is not None:
        env = environment_summary(project_dir, cache) if plan.environment else ""
        reserve = estimate_tokens(env) + 8 if env else 0
        b.left -= reserve
        _add_project(b, task, project_dir, cache, plan)
        b.left += reserve
        if env:
            b.add("Environment", "", env, 4, "environment", "environment", b.left)
    if output_instruction:
        b.tail(output_instruction, Source(1, "output", "output", estimate_tokens(
            output_instruction)))
    return b.build(level)


def _add_dependencies(b: _Builder, deps: list[tuple[str, str]], share: int,
                      cap: int | None) -> None:
    """Water-filling: short results whole, the long ones share what is left evenly."""
    section = "Results of the tasks this one depends on"
    texts = [(dep_id, output or "(no output)") for dep_id, output in deps]
    want = [estimate_tokens(out) + estimate_tokens(f"### {dep_id}") + 2
            for dep_id, out in texts]
    order = sorted(range(len(texts)), key=want.__getitem__)
    allowance: dict[int, int] = {}
    left = share - estimate_tokens(f"## {section}") - 1
    for n, i in enumerate(order):
        fair = left // (len(order) - n)
        allowance[i] = min(want[i], fair, cap if cap is not None else want[i])
        left -= allowance[i]
    # The section header is charged to the first result added.
    allowance[0] += estimate_tokens(f"## {section}") + 1
    for i, (dep_id, output) in enumerate(texts):
        b.add(section, dep_id, output, 2, "dependency", dep_id, allowance[i], head=0.6)


def _add_project(b: _Builder, task: ContextTask, root: Path, cache: ContextCache,
                 plan: _Plan) -> None:
    text = task.prompt + "\n" + (task.context or "")
    refs: list[FileRef] = memory_files(root) if plan.memory else []
    if plan.named:
        refs += named_files(text, root)
    if plan.hinted:
        refs += hinted_files(text, root, cache, exclude={r.path for r in refs},
                             limit=plan.hinted)
    for n, ref in enumerate(refs):
        # Named files share the room left among themselves and may crowd out hinted ones;
        # memory and hinted files leave room for what follows.
        named_left = sum(1 for r in refs[n:] if r.reason == "named")
        share = b.left // (named_left if ref.reason == "named"
                           else max(1, min(3, len(refs) - n)))
        if share < _MIN_USEFUL:
            b.omitted.append(ref.path)
            continue
        body = read_project_file(root, ref.path, cache)  # read only once there is room
        if body is None:
            continue
        kind: SourceKind = "memory" if ref.reason == "memory" else \
            "named" if ref.reason == "named" else "hinted"
        title = ref.path if ref.reason == "memory" else f"{ref.path} ({ref.reason} in the task)"
        b.add("Project context", title, body, 3, kind, ref.path, share,
              fenced=ref.reason != "memory")


class _Builder:
    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.left = budget
        self.head: list[str] = []
        self.parts: list[_Part] = []
        self.end: list[str] = []
        self.sources: list[Source] = []
        self.omitted: list[str] = []

    def fixed(self, text: str, source: Source) -> None:
        self.head.append(text)
        self.sources.append(source)
        self.left -= source.tokens + 1

    def reserve(self, text: str) -> None:
        self.left -= estimate_tokens(text) + 1

    def tail(self, text: str, source: Source) -> None:
        self.end.append(text)
        self.sources.append(source)

    def add(self, section: str, title: str, body: str, level: int, kind: SourceKind, ref: str,
            allowance: int, *, head: float = 1.0, fenced: bool = False) -> None:
        header = (estimate_tokens(f"## {section}") + 1 if section and not any(
            p.section == section for p in self.parts) else 0)
        overhead = header + estimate_tokens(f"### {title}") + 2 + (6 if fenced else 0)
        room = min(allowance, self.left) - overhead
        if room < min(_MIN_USEFUL, estimate_tokens(body)):
            self.omitted.append(ref)
            return
        clipped, cut = clip_to_tokens(body, room, head=head)
        cost = overhead + estimate_tokens(clipped)
        self.left -= cost
        self.parts.append(_Part(section, title, clipped,
                                Source(level, kind, ref, cost, cut), fenced))

    def build(self, level: ContextLevel) -> BuiltPrompt:
        blocks = list(self.head)
        section = None
        for part in self.parts:
            if part.section and part.section != section:
                blocks.append(f"## {part.section}")
                section = part.section
            blocks.append(part.render())
        blocks += self.end
        text = "\n\n".join(blocks)
        sources = [*self.sources[:1], *(p.source for p in self.parts), *self.sources[1:]]
        task_tokens = self.sources[0].tokens + sum(s.tokens for s in self.sources[1:])
        return BuiltPrompt(text, estimate_tokens(text), self.budget, level,
                           tuple(sorted({s.level for s in sources})), tuple(sources),
                           tuple(self.omitted), over_budget=task_tokens > self.budget)


def _longest_backtick_run(text: str) -> int:
    return max((len(run) for run in _BACKTICKS.findall(text)), default=0)
