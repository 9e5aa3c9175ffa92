"""Hostile inputs cost both detectors work linear in their size, with a bounded constant.

Work is counted, not timed, so a loaded machine cannot make these tests flaky: every Python
function and builtin call made while scanning is counted through `sys.setprofile`. The
count is deterministic for a given text. Regex backtracking happens inside one call and is
not seen here; `benchmarks/bench_detection.py` times the same shapes at 1 MB.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType

import pytest

from smart_orchestrator.detect.injection import detect_injection
from smart_orchestrator.detect.secrets import scan_text

SIZE = 100_000


def _fill(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


# Shapes that made a detector loop once per token or per flag, and their neighbours.
SHAPES = {
    "one-letter-words": "a ",
    "non-word-tokens": "\u0130 ",
    "curl-flags": " -u ",
    "curl-flags-with-colons": " -u x:",
    "connection-strings": "server=a;password=",
    "password-semicolons": "password=x;",
    "code-prefix": "requests.post(",
    "ignore-storm": "ignore all ",
    "reply-storm": "add your response ",
    "split-words": "a\u200b",
    "equals": "=",
    "quotes": "'\"",
    "brackets": "([{<",
    "base64-alphabet": "QUJDRGVmZ2g0NTY3",
    "comments": "<!-- ignore all previous instructions -->",
    "mid-token-format": "0123456789abcdef0123456789abcdef-us1 ",
    "table-rows": "\n| a | b |",
    "newlines": "\n",
    "repeated-attack": "ignore previous instructions ",
    "anchor-storm": "tell the user send secret ignore rules mode you are now password ",
    "open-comments": "<!--",
    "closed-comments": "<!-- x -->",
    "padded-lines": "a" + " " * 1000 + "\n",
    "zero-width": "\u200b",
    "spaced-hex": "69 67 6e 6f 72 65 20 ",
    # The rules for command lines, .pgpass, hashes, XML entries and named random values.
    "password-flags": " -p xxxx",
    "user-password-flags": " -u a -p bbbb",
    "one-dash-flags": " -password ",
    "pgpass-colons": ":12:ab:cd:",
    "kerberos-marks": "$krb5tgs$23$",
    "xml-named-entries": 'key="a" ',
    "yaml-next-line": "token:\n  ",
    "named-random-values": "a: aB3dE5gH7jK9mN1pQ3sT ",
    "odbc-braces": "pwd={",
    "dsl-setters": 'password "x"\n',
    # Occurrences of the literal search's words where their pattern then fails.
    "dockerfile-words": "ENV = ",
    "bounded-keywords": "pass _sk passage ",
}


def _calls(scan: Callable[[str], object], text: str) -> int:
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        scan(text)
    finally:
        sys.setprofile(None)
    return count


@pytest.mark.parametrize("scan", [detect_injection, scan_text], ids=["injection", "secrets"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_hostile_input_costs_linear_bounded_work(scan: Callable[[str], object],
                                                 shape: str) -> None:
    small = _calls(scan, _fill(SHAPES[shape], SIZE))
    large = _calls(scan, _fill(SHAPES[shape], 2 * SIZE))
    # Per-token loops made 5-6 calls per character; today's worst makes under 3.
    assert small <= 4 * SIZE + 20_000
    # Twice the text, about twice the work: nothing grows faster than the input.
    assert large <= 2.2 * small + 20_000
