from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from smart_orchestrator.waves.contracts import (
    MAX_REFORMATS,
    Contract,
    parse_json_answer,
    schema_instruction,
)
from smart_orchestrator.waves.plan import TaskSpec
from smart_orchestrator.waves.prompts import ContextLevel, build_prompt, level_for_attempt

SCHEMA: dict[str, Any] = {"type": "object", "required": ["n"],
                          "properties": {"n": {"type": "integer"}}}


@pytest.mark.parametrize(("text", "value"), [
    ('{"n": 1}', {"n": 1}),
    ('  [1, 2]\n', [1, 2]),
    ('Here it is:\n```json\n{"n": 2}\n```\nthanks', {"n": 2}),
    ('The answer is {"n": 3} as requested.', {"n": 3}),
    ("42", 42),
])
def test_parses_json_from_common_answer_shapes(text: str, value: Any) -> None:
    assert parse_json_answer(text) == (True, value, "")


def test_reports_an_answer_without_json() -> None:
    ok, _, problem = parse_json_answer("I could not do it.")
    assert not ok and "no JSON" in problem


def test_valid_answer_needs_no_reformat() -> None:
    contract = Contract(SCHEMA)
    assert contract.follow_up('{"n": 5}') is None
    assert contract.last.ok and contract.last.value == {"n": 5} and contract.reformats == 0


def test_invalid_answer_gets_a_reformat_request_naming_the_errors() -> None:
    contract = Contract(SCHEMA)
    follow = contract.follow_up('{"n": "five"}')
    assert follow is not None and "at /n: 'five' is not of type 'integer'" in follow
    assert '"required":["n"]' in follow
    assert contract.reformats == 1


def test_stops_asking_after_two_reformats() -> None:
    contract = Contract(SCHEMA)
    answers = ["nope", "{}", '{"n": null}']
    follow_ups = [contract.follow_up(a) for a in answers]
    assert follow_ups[:2] != [None, None] and follow_ups[2] is None
    assert contract.reformats == MAX_REFORMATS == 2
    assert not contract.last.ok and "None is not of type 'integer'" in contract.last.errors[0]


def _task(**extra: Any) -> TaskSpec:
    return TaskSpec.model_validate({"id": "t", "prompt": "Summarise.", **extra})


def test_attempts_lose_context_progressively() -> None:
    task = _task(context="BACKGROUND", output_schema=SCHEMA)
    deps = [("a", "A" * 5000)]
    full, minimal, essential = (build_prompt(task, deps, level_for_attempt(n)).text
                                for n in (1, 2, 3))
    assert "BACKGROUND" in full and "A" * 5000 in full
    assert "BACKGROUND" not in minimal and "### a" in minimal and "A" * 5000 not in minimal
    assert "more characters omitted" in minimal
    assert "BACKGROUND" not in essential
    assert len(full) > len(minimal) > len(essential)
    assert all(p.startswith("Summarise.") and p.rstrip().endswith(schema_instruction(SCHEMA))
               for p in (full, minimal, essential))
    assert level_for_attempt(7) is ContextLevel.ESSENTIAL


def test_wave_prompts_carry_the_project_at_the_full_level_only(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text("Always run PROJECT-RULE before committing.\n")
    (tmp_path / "pricing.py").write_text("def PRICE_FN(x):\n    return x * 2\n")
    task = _task(prompt="Fix the rounding in pricing.py.")
    full, minimal, essential = (
        build_prompt(task, [], level_for_attempt(n), project_dir=tmp_path) for n in (1, 2, 3))
    assert "PROJECT-RULE" in full.text and "PRICE_FN" in full.text
    assert {3, 4} <= set(full.levels_included)
    assert "PROJECT-RULE" not in minimal.text and "PRICE_FN" in minimal.text
    assert 4 not in minimal.levels_included
    assert essential.text == "Fix the rounding in pricing.py."


def test_the_context_budget_is_per_task() -> None:
    deps = [("a", "word " * 20_000)]
    small = build_prompt(_task(context_tokens=500), deps, level_for_attempt(1))
    large = build_prompt(_task(context_tokens=20_000), deps, level_for_attempt(1))
    assert small.tokens <= 500 < large.tokens <= 20_000


def test_a_task_without_context_sends_the_same_prompt_every_attempt() -> None:
    task = _task()
    assert {build_prompt(task, [], level_for_attempt(n)).text for n in (1, 2, 3)} == {
        "Summarise."}
