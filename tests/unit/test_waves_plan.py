from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import ValidationError

from smart_orchestrator.waves.plan import WavePlan, dependency_levels


def _plan(*tasks: dict[str, Any], **extra: Any) -> WavePlan:
    return WavePlan.model_validate({"tasks": list(tasks), **extra})


def _t(task_id: str, *deps: str, **extra: Any) -> dict[str, Any]:
    return {"id": task_id, "prompt": f"do {task_id}", "depends_on": list(deps), **extra}


def test_levels_group_tasks_whose_dependencies_are_all_earlier() -> None:
    plan = _plan(_t("a"), _t("b", "a"), _t("c", "a"), _t("d", "b", "c"), _t("e"))
    assert dependency_levels(plan) == [["a", "e"], ["b", "c"], ["d"]]


def test_rejects_unknown_dependency_naming_it() -> None:
    with pytest.raises(ValidationError, match=r"task 'b' depends on unknown task\(s\) 'zz'"):
        _plan(_t("a"), _t("b", "a", "zz"))


def test_rejects_cycle_spelling_it_out_in_dependency_order() -> None:
    with pytest.raises(ValidationError) as info:
        _plan(_t("a", "b"), _t("b", "c"), _t("c", "a"), _t("d"))
    message = str(info.value)
    assert "dependency cycle:" in message
    cycle = message.split("dependency cycle: ")[1].split(" (")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    deps = {"a": "b", "b": "c", "c": "a"}
    assert all(deps[x] == y for x, y in itertools.pairwise(cycle))


def test_rejects_self_dependency_as_a_cycle() -> None:
    with pytest.raises(ValidationError, match="dependency cycle: a -> a"):
        _plan(_t("a", "a"))


@pytest.mark.parametrize(("tasks", "match"), [
    ([_t("a"), _t("a")], "used more than once"),
    ([_t("a"), _t("b", "a", "a")], "more than once"),
    ([_t("bad id")], "String should match pattern"),
    ([{"id": "a", "prompt": ""}], "at least 1 character"),
    ([_t("a", output_schema={"type": "no-such-type"})], "not a valid JSON Schema"),
    ([_t("a", timeout_s=0)], "greater than 0"),
    ([_t("a", surprise=1)], "Extra inputs are not permitted"),
    ([_t("a", compensate={"command": []})], "at least 1 item"),
    ([], "at least 1 item"),
])
def test_rejects_invalid_plans_with_the_reason(tasks: list[dict[str, Any]], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        _plan(*tasks)


def test_accepts_full_task_definition() -> None:
    plan = _plan(_t("a", agent={"name": "reviewer", "system_prompt": "be brief",
                                "model": "claude-x"},
                    allowed_tools=["Read"], output_schema={"type": "object"},
                    timeout_s=30, max_turns=3, budget_usd=0.5, priority=5,
                    compensate={"prompt": "undo it"}),
                 _t("b", "a", compensate={"command": ["git", "restore", "."]}),
                 on_failure="compensate")
    assert plan.task("a").agent_type == "reviewer"
    assert plan.dependents() == {"a": ["b"], "b": []}
