"""A story's execution plan (Markdown or JSON) as a `spawn_wave` plan, deterministically.

The `execute` skill converts plans with this rather than having the model read Markdown,
so the same file always yields the same tasks, prompts and dependencies.

Markdown format (see docs/demo.md for an example):

- the first `#` heading names the plan;
- a heading `Task <id>: <title>` (any level, `-` or `.` also separate the title) starts a
  task; the text under it, up to the next heading of the same or a higher level, is its
  prompt, after the title;
- field lines in a task's text set its options: `Depends on:`, `Agent:`, `Model:`,
  `Tools:`, `Timeout:` (`300`, `90s`, `5m`, `1h`), `Max turns:`, `Budget:` (`$0.50`),
  `Priority:`, `Context:` and `Output schema:` (inline JSON, or a fenced block right after
  the line). Bold markup and list bullets around a field name are ignored;
- a heading `Wave <n>` (or `Phase`, `Stage`) groups tasks: a task in a wave with no
  `Depends on:` line depends on every task of the wave before it. `Depends on: none`
  means no dependency; `Depends on: wave 1` means every task of that wave.

Anything else (overviews, notes, acceptance lists outside tasks) is ignored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .errors import OrchestratorError
from .waves.plan import WavePlan

__all__ = ["PlanFormatError", "load_plan", "plan_from_markdown"]

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```+|~~~+)")
_TASK = re.compile(r"^task\b\s*(?P<id>[A-Za-z0-9][A-Za-z0-9._-]{0,63}?)?\s*"
                   r"(?:[:)\-\u2013\u2014]|\.(?=\s)|$)\s*(?P<title>.*)$", re.IGNORECASE)
_WAVE = re.compile(r"^(?:wave|phase|stage)\s+(?P<id>[A-Za-z0-9][A-Za-z0-9._-]*?)\b"
                   r"\s*(?:[:.\-\u2013\u2014]\s*(?P<title>.*))?$", re.IGNORECASE)
_FIELD_NAMES = {
    "depends on": "depends_on", "dependencies": "depends_on", "depends": "depends_on",
    "deps": "depends_on", "agent": "agent", "agent type": "agent", "model": "model",
    "tools": "tools", "allowed tools": "tools", "timeout": "timeout",
    "max turns": "max_turns", "budget": "budget", "priority": "priority",
    "context": "context", "output schema": "output_schema", "system prompt": "system_prompt",
}
_FIELD = re.compile(r"^\s*(?:[-*+]\s+)?[*_]{0,2}(?P<name>" + "|".join(
    sorted((re.escape(n) for n in _FIELD_NAMES), key=len, reverse=True))
    + r")[*_]{0,2}\s*:\s*[*_]{0,2}\s*(?P<value>.*?)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?)?$",
                       re.IGNORECASE)
_NONE = {"", "none", "-", "n/a", "na", "nothing", "no"}


class PlanFormatError(OrchestratorError):
    """The plan cannot be read as a wave plan; `reason` names the line or the task."""


@dataclass(slots=True)
class _Task:
    id: str
    title: str
    line: int
    level: int
    wave: int | None
    body: list[str] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)
    schema_line: int | None = None


@dataclass(slots=True)
class _Doc:
    name: str | None = None
    tasks: list[_Task] = field(default_factory=list)
    waves: list[tuple[str, list[str]]] = field(default_factory=list)


def load_plan(path: Path, *, name: str | None = None) -> WavePlan:
    """A plan file as a validated `WavePlan`: JSON (a plan, or `{"plan": ...}`) or Markdown."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlanFormatError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise PlanFormatError(f"{path} is not UTF-8 text") from exc
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise PlanFormatError(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("plan"), dict):
            data = data["plan"]
        if name and isinstance(data, dict):
            data = {**data, "name": name}
        return _validated(data, str(path))
    return plan_from_markdown(text, name=name, source=str(path))


def plan_from_markdown(text: str, *, name: str | None = None,
                       source: str = "plan") -> WavePlan:
    doc = _parse(text.splitlines())
    if not doc.tasks:
        raise PlanFormatError(f"{source}: no tasks found",
                              hint="a task is a heading such as `### Task 1.1: Add the model`")
    tasks = [_task_json(t, doc) for t in doc.tasks]
    plan: dict[str, Any] = {"tasks": tasks}
    if name or doc.name:
        plan["name"] = (name or doc.name or "")[:200]
    return _validated(plan, source)


def _validated(data: Any, source: str) -> WavePlan:
    try:
        return WavePlan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PlanFormatError(f"{source}: {where + ': ' if where else ''}{first['msg']}") \
            from None


# -- reading the document ----------------------------------------------------------------

def _parse(lines: list[str]) -> _Doc:
    doc, task = _Doc(), None
    wave_level: int | None = None
    in_fence: str | None = None
    for number, line in enumerate(lines, 1):
        fence = _FENCE.match(line)
        if in_fence is not None:
            if fence and fence.group(1)[0] == in_fence:
                in_fence = None
            if task is not None:
                task.body.append(line)
            continue
        if fence:
            in_fence = fence.group(1)[0]
            if task is not None:
                task.body.append(line)
            continue
        heading = _HEADING.match(line)
        if heading is None:
            if task is not None:
                task.body.append(line)
            continue
        level, title = len(heading.group(1)), _plain(heading.group(2))
        if task is not None and level <= task.level:
            task = None
        if wave_level is not None and level <= wave_level and not _TASK.match(title):
            wave_level = None
        if (m := _TASK.match(title)) is not None:
            task = _Task(m.group("id") or f"task-{len(doc.tasks) + 1}",
                         m.group("title").strip() or title, number, level,
                         len(doc.waves) - 1 if wave_level is not None else None)
            if doc.waves and wave_level is not None:
                doc.waves[-1][1].append(task.id)
            doc.tasks.append(task)
        elif (w := _WAVE.match(title)) is not None and task is None:
            doc.waves.append((w.group("id").lower(), []))
            wave_level = level
        elif level == 1 and doc.name is None and task is None:
            doc.name = title
        elif task is not None:
            task.body.append(line)
    return doc


def _plain(text: str) -> str:
    """Heading text without emphasis or code markup."""
    return re.sub(r"[*`]+|(?<!\w)_+|_+(?!\w)", "", text).strip()


# -- turning a task into JSON ----------------------------------------------------------------

def _task_json(task: _Task, doc: _Doc) -> dict[str, Any]:
    prompt_lines = _take_fields(task)
    out: dict[str, Any] = {"id": task.id, "prompt": _prompt(task.title, prompt_lines)}
    deps = _dependencies(task, doc)
    if deps:
        out["depends_on"] = deps
    f = task.fields
    agent = {k: v for k, v in (("name", f.get("agent")), ("model", f.get("model")),
                               ("system_prompt", f.get("system_prompt"))) if v}
    if agent:
        out["agent"] = agent
    if "tools" in f:
        out["allowed_tools"] = [t.strip(" `") for t in f["tools"].split(",") if t.strip(" `")]
    if "timeout" in f:
        out["timeout_s"] = _seconds(f["timeout"], task)
    if "max_turns" in f:
        out["max_turns"] = _integer(f["max_turns"], "max turns", task)
    if "budget" in f:
        out["budget_usd"] = _number(f["budget"].lstrip("$").replace("USD", "").strip(),
                                    "budget", task)
    if "priority" in f:
        out["priority"] = _integer(f["priority"], "priority", task)
    if "context" in f:
        out["context"] = f["context"]
    if "output_schema" in f:
        out["output_schema"] = _schema(f["output_schema"], task)
    return out


def _take_fields(task: _Task) -> list[str]:
    """Pull field lines (and an output schema's fenced block) out of the task's text."""
    rest: list[str] = []
    lines = task.body
    i = 0
    while i < len(lines):
        m = _FIELD.match(lines[i])
        if m is None:
            rest.append(lines[i])
            i += 1
            continue
        key, value = _FIELD_NAMES[m.group("name").lower()], m.group("value").strip("*_ ")
        i += 1
        if key == "output_schema" and not value:
            value, i = _fenced_after(lines, i, task)
        task.fields[key] = value
    return rest


def _fenced_after(lines: list[str], i: int, task: _Task) -> tuple[str, int]:
    while i < len(lines) and not lines[i].strip():
        i += 1
    opening = _FENCE.match(lines[i]) if i < len(lines) else None
    if opening is None:
        raise PlanFormatError(f"task {task.id!r} (line {task.line}): `Output schema:` needs "
                              "JSON on the same line or a fenced block right after it")
    marker = opening.group(1)[0]
    body: list[str] = []
    i += 1
    while i < len(lines) and not (lines[i].lstrip().startswith(marker * 3)):
        body.append(lines[i])
        i += 1
    return "\n".join(body), i + 1


def _prompt(title: str, lines: list[str]) -> str:
    body = "\n".join(lines).strip("\n")
    body = re.sub(r"\n{3,}", "\n\n", body).strip()
    return f"{title}\n\n{body}" if body else title


def _dependencies(task: _Task, doc: _Doc) -> list[str]:
    if "depends_on" not in task.fields:
        if task.wave is None or task.wave == 0:
            return []
        previous = [ids for _, ids in doc.waves[: task.wave] if ids]
        return list(previous[-1]) if previous else []
    value = task.fields["depends_on"].strip()
    if value.lower().strip(".") in _NONE:
        return []
    deps: list[str] = []
    for raw in re.split(r",|;|\band\b", value):
        token = re.sub(r"\(.*?\)|[`*#]", "", raw).strip()
        token = re.sub(r"^task\s+", "", token, flags=re.IGNORECASE).strip(" .")
        if not token:
            continue
        wave = re.match(r"^(?:wave|phase|stage)\s+(\S+)$", token, re.IGNORECASE)
        if wave is not None:
            deps += _wave_tasks(wave.group(1).lower(), task, doc)
        else:
            deps += token.split()
    return list(dict.fromkeys(d for d in deps if d != task.id))


def _wave_tasks(wave_id: str, task: _Task, doc: _Doc) -> list[str]:
    for wid, ids in doc.waves:
        if wid == wave_id:
            return ids
    raise PlanFormatError(f"task {task.id!r} (line {task.line}) depends on unknown wave "
                          f"{wave_id!r}")


def _seconds(value: str, task: _Task) -> float:
    m = _DURATION.match(value.strip())
    if m is None:
        raise PlanFormatError(f"task {task.id!r} (line {task.line}): timeout {value!r} is not "
                              "a duration such as 300, 90s, 5m or 1h")
    unit = (m.group(2) or "s")[0].lower()
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[unit]


def _integer(value: str, what: str, task: _Task) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise PlanFormatError(f"task {task.id!r} (line {task.line}): {what} {value!r} is "
                              "not a whole number") from None


def _number(value: str, what: str, task: _Task) -> float:
    try:
        return float(value)
    except ValueError:
        raise PlanFormatError(f"task {task.id!r} (line {task.line}): {what} {value!r} is "
                              "not a number") from None


def _schema(value: str, task: _Task) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise PlanFormatError(f"task {task.id!r} (line {task.line}): output schema is not "
                              f"valid JSON: {exc}") from None
