"""Execution plans in Markdown (or JSON) become validated `spawn_wave` plans."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smart_orchestrator.plan_markdown import PlanFormatError, load_plan, plan_from_markdown

REPO_ROOT = Path(__file__).resolve().parents[2]

STORY = """\
# Story 42: rate-limit the login endpoint

Some overview that is not a task.

## Wave 1: foundations

### Task 1.1: Add the limiter module
**Agent:** python-dev
**Tools:** Read, Edit, Bash
**Timeout:** 5m

Create `src/limiter.py` with a token bucket.

```python
# a fence holding a heading-like line is not a heading
## Task 9: not a task
```

### Task 1.2: Document the limit
- Depends on: none
- Priority: 2

Write the README section.

## Wave 2: wiring

### Task 2.1 - Wire the limiter into login
Use the limiter from 1.1 in `src/auth/login.py`.

#### Acceptance
- [ ] 429 after five attempts

### Task 2.2. Tests
Depends on: Task 2.1 and Task 1.2 (docs)
Budget: $0.50
Max turns: 8
Output schema:
```json
{"type": "object", "required": ["tests"]}
```
Write tests for the limiter.

## Notes
Everything here is ignored.
"""


def test_headings_fields_and_waves_become_tasks_with_dependencies() -> None:
    plan = plan_from_markdown(STORY)
    assert plan.name == "Story 42: rate-limit the login endpoint"
    tasks = {t.id: t for t in plan.tasks}
    assert list(tasks) == ["1.1", "1.2", "2.1", "2.2"]
    first = tasks["1.1"]
    assert first.agent.name == "python-dev"
    assert first.allowed_tools == ["Read", "Edit", "Bash"]
    assert first.timeout_s == 300
    assert first.depends_on == []
    assert first.prompt.startswith("Add the limiter module\n\nCreate `src/limiter.py`")
    assert "## Task 9: not a task" in first.prompt
    assert tasks["1.2"].priority == 2 and tasks["1.2"].depends_on == []
    # No `Depends on:` line in wave 2: every task of wave 1.
    assert tasks["2.1"].depends_on == ["1.1", "1.2"]
    assert "#### Acceptance" in tasks["2.1"].prompt
    last = tasks["2.2"]
    assert last.depends_on == ["2.1", "1.2"]
    assert (last.budget_usd, last.max_turns) == (0.5, 8)
    assert last.output_schema == {"type": "object", "required": ["tests"]}
    assert last.prompt == "Tests\n\nWrite tests for the limiter."
    assert all("ignored" not in t.prompt for t in plan.tasks)


def test_the_same_file_always_gives_the_same_plan() -> None:
    first = plan_from_markdown(STORY).model_dump(mode="json")
    assert plan_from_markdown(STORY).model_dump(mode="json") == first


@pytest.mark.parametrize(("heading", "task_id", "title"), [
    ("## Task 3: Write tests", "3", "Write tests"),
    ("### Task T2 - Review", "T2", "Review"),
    ("### **Task 1.2.** Bold title", "1.2", "Bold title"),
    ("## task a_b: lower case", "a_b", "lower case"),
    ("## Task: no id", "task-1", "no id"),
])
def test_task_heading_forms(heading: str, task_id: str, title: str) -> None:
    [task] = plan_from_markdown(f"{heading}\nDo it.\n").tasks
    assert (task.id, task.prompt) == (task_id, f"{title}\n\nDo it.")


def test_depends_on_a_whole_wave() -> None:
    text = ("## Wave 1\n### Task a: A\nx\n### Task b: B\ny\n"
            "## Wave 2\n### Task c: C\nDepends on: none\n"
            "## Wave 3\n### Task d: D\nDepends on: wave 1, c\n")
    tasks = {t.id: t.depends_on for t in plan_from_markdown(text).tasks}
    assert tasks == {"a": [], "b": [], "c": [], "d": ["a", "b", "c"]}


@pytest.mark.parametrize(("text", "message"), [
    ("# Only a title\n\nNo tasks here.\n", "no tasks found"),
    ("## Task a: A\nDepends on: b\n", "unknown task(s) 'b'"),
    ("## Task a: A\nDepends on: b\n## Task b: B\nDepends on: a\n", "dependency cycle"),
    ("## Task a: A\nTimeout: soon\n", "timeout 'soon' is not a duration"),
    ("## Task a: A\nOutput schema: {not json\n", "output schema is not valid JSON"),
    ("## Task a: A\nOutput schema:\nplain text\n", "needs JSON on the same line"),
    ("## Task a: A\nDepends on: wave 7\n", "unknown wave '7'"),
    ("## Task a: A\n## Task a: again\n", "used more than once"),
])
def test_plans_that_cannot_run_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(PlanFormatError) as caught:
        plan_from_markdown(text)
    assert message in caught.value.reason


def test_json_plans_are_validated_and_may_be_wrapped(tmp_path: Path) -> None:
    plan = {"name": "j", "tasks": [{"id": "a", "prompt": "A"},
                                   {"id": "b", "prompt": "B", "depends_on": ["a"]}]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"plan": plan}))
    loaded = load_plan(path)
    assert [t.id for t in loaded.tasks] == ["a", "b"] and loaded.name == "j"
    path.write_text(json.dumps({"tasks": [{"id": "a", "prompt": "A", "depends_on": ["z"]}]}))
    with pytest.raises(PlanFormatError, match="unknown task"):
        load_plan(path)


def test_cli_prints_the_plan_as_json_and_exits_2_on_a_bad_plan(tmp_path: Path) -> None:
    good, bad = tmp_path / "PLAN.md", tmp_path / "BAD.md"
    good.write_text(STORY)
    bad.write_text("## Task a: A\nDepends on: nowhere\n")

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "smart_orchestrator.cli",
                               "plan-from-markdown", str(path)], capture_output=True,
                              text=True, check=False, cwd=REPO_ROOT)

    ok = run(good)
    assert ok.returncode == 0, ok.stderr
    printed = json.loads(ok.stdout)
    assert [t["id"] for t in printed["tasks"]] == ["1.1", "1.2", "2.1", "2.2"]
    failed = run(bad)
    assert failed.returncode == 2 and failed.stdout == ""
    assert "unknown task(s) 'nowhere'" in failed.stderr
