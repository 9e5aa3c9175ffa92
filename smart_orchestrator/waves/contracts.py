"""Output contracts: parse an agent's answer as JSON and validate it against the task's schema.

A failing answer earns a reformat request naming what was wrong, at most `MAX_REFORMATS`
times; after that the task fails with the validation errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from jsonschema.validators import validator_for

from ..canonical import canonical_json

__all__ = ["MAX_REFORMATS", "Contract", "ContractResult", "parse_json_answer"]

MAX_REFORMATS = 2
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n?```", re.S | re.I)
_MAX_ERRORS = 5


@dataclass(frozen=True, slots=True)
class ContractResult:
    ok: bool
    value: Any = None
    errors: tuple[str, ...] = ()


def parse_json_answer(text: str) -> tuple[bool, Any, str]:
    """The JSON value in an answer: the whole text, a fenced block, or the first value.

    Returns (ok, value, problem).
    """
    stripped = text.strip()
    candidates = [stripped, *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            return True, json.loads(candidate), ""
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for i, ch in enumerate(stripped):
        if ch in "{[":
            try:
                value, _ = decoder.raw_decode(stripped, i)
            except ValueError:
                continue
            return True, value, ""
    return False, None, "the answer contains no JSON value"


@dataclass(slots=True)
class Contract:
    schema: dict[str, Any]
    reformats: int = 0
    last: ContractResult = field(default_factory=lambda: ContractResult(False))

    def check(self, text: str) -> ContractResult:
        ok, value, problem = parse_json_answer(text)
        if not ok:
            self.last = ContractResult(False, errors=(problem,))
            return self.last
        validator = validator_for(self.schema)(self.schema)
        errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
        if errors:
            described = tuple(_describe(e.absolute_path, e.message) for e in errors)
            self.last = ContractResult(False, value, described[:_MAX_ERRORS])
        else:
            self.last = ContractResult(True, value)
        return self.last

    def follow_up(self, text: str) -> str | None:
        """The next prompt to send after an answer: a reformat request, or None when done."""
        result = self.check(text)
        if result.ok or self.reformats >= MAX_REFORMATS:
            return None
        self.reformats += 1
        return reformat_prompt(self.schema, result.errors)


def _describe(path: Any, message: str) -> str:
    where = "/" + "/".join(str(p) for p in path)
    return f"at {where}: {message}" if where != "/" else message


def schema_instruction(schema: dict[str, Any]) -> str:
    return ("Answer with only a JSON value that satisfies this JSON Schema: no prose, "
            "no code fence.\n" + canonical_json(schema).decode())


def reformat_prompt(schema: dict[str, Any], errors: tuple[str, ...]) -> str:
    problems = "\n".join(f"- {e}" for e in errors)
    return ("Your answer did not satisfy the required JSON Schema:\n" + problems + "\n"
            "Reply again with the same content as only a JSON value that satisfies the "
            "schema: no prose, no code fence.\n" + canonical_json(schema).decode())
