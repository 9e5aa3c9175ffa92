"""The one-pass literal search gives the secret scanners what `in` and `str.find` gave."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_orchestrator.detect._literals import _LITERALS, Literals, windows_at
from smart_orchestrator.detect._text import anchor_windows, ascii_lower


def _find_all(text: str, literal: str) -> list[int]:
    out: list[int] = []
    at = text.find(literal)
    while at != -1:
        out.append(at)
        at = text.find(literal, at + 1)
    return out


def _literals(text: str) -> Literals:
    return Literals(text, ascii_lower(text))


# Pieces that make literals overlap (`:::` in `::::`, `hook` inside `hooks.slack.com`),
# meet across piece boundaries, change case, and widen the string (an emoji).
_PIECES = [*sorted(_LITERALS), "::", "ENV", " ", "\t", "-", "|", "K", "\U0001f600", "é",
           "\u212a", "a", "X", "Password", "SIG=", "/P", " -P"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_reports_every_occurrence_of_every_literal(pieces: list[str]) -> None:
    text = "".join(pieces)
    lowered = ascii_lower(text)
    found = Literals(text, lowered)
    for literal in _LITERALS:
        assert found.positions(literal) == _find_all(lowered, literal), literal
        assert (literal in found) == (literal in lowered)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_in_text_keeps_the_case_as_written(pieces: list[str]) -> None:
    text = "".join(pieces)
    found = _literals(text)
    for literal in ("ENV ", "ARG\t", "setx ", " -w", "variable", "key=", "--user", " -u", "://"):
        assert found.in_text(literal) == (literal in text), literal


def test_lower_case_literal_found_written_in_upper_case() -> None:
    found = _literals("Authorization: Bearer x\nENV DB_PASSWORD y")
    assert "authorization" in found and "bearer" in found
    assert found.in_text("ENV ") and not found.in_text("setx ")
    assert found.positions("env ") == [24]


def test_unknown_literal_is_an_error_not_an_absence() -> None:
    found = _literals("anything")
    with pytest.raises(KeyError):
        _ = "not-a-gate" in found
    with pytest.raises(KeyError):
        found.positions("not-a-gate")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["sig=", "x", "y" * 50, "sig=sig=", "\n"]), max_size=60),
       st.integers(0, 40), st.integers(0, 40))
def test_windows_match_the_find_based_windows(pieces: list[str], back: int, ahead: int) -> None:
    text = "".join(pieces)
    expected = anchor_windows(text, "sig=", back, ahead)
    assert windows_at(_find_all(text, "sig="), 4, back, ahead, len(text)) == expected
