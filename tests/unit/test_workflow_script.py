"""Which workflow scripts the policy can check, and what it reads from them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smart_orchestrator.policy.agent_types import canonical_agent_type
from smart_orchestrator.policy.workflow_script import analyze_script

META = "export const meta = {name: 'x', description: 'y', phases: [{title: 'A'}]}\n"

CHECKABLE = [
    ("parallel thunks",
     "const r = await parallel([() => agent('one', {label: 'a'}), () => agent('two')])\n"
     "return r", ["one", "two"]),
    ("sequential with options",
     "phase('A')\nconst x = await agent(\"hi\", {agentType: 'Explore', schema: {type: 'o'}})\n"
     "log('done')\nreturn x", ["hi"]),
    ("then callback", "const a = await agent('p1').then(v => agent('p2'))\n"
                      "if (a) { log('y') } else { log('n') }", ["p1", "p2"]),
    ("try/catch", "try { await agent('x') } catch (e) { log(String(e)) }", ["x"]),
    ("escapes decoded", "await agent('\\x41\\u004bIA \\u{5A}')", ["AKIA Z"]),
    ("comments and plain template",
     "// agent(args)\n/* agent(args) */ await agent(`plain`)", ["plain"]),
    ("destructuring", "const [a, b] = await parallel([() => agent('a'), async () => "
                      "agent('b')])", ["a", "b"]),
    ("no agents", "log('nothing')", []),
    ("value helpers", "const n = Math.max(1, 2)\nif (!Array.isArray(args)) throw new Error('x')\n"
                      "const t = 'p'.replace('p', 'q')\nconst r = await agent('q')", ["q"]),
]

UNCHECKABLE = [
    ("for loop", "for (const x of args) await agent('x')", "'for'"),
    ("while loop", "while (true) await agent('x')", "'while'"),
    ("named thunk reused", "const f = () => agent('x')\nawait parallel([f, f])", "arrow"),
    ("stored thunk indexed twice",
     "const xs = [() => agent('a')]\nawait parallel([xs[0], xs[0]])", "arrow"),
    ("map over args", "await parallel(args.map(a => () => agent('x')))", "'map'"),
    ("sort comparator", "[1, 2, 3].sort(() => agent('x'))", "'sort'"),
    ("interpolated prompt", "await agent(`hi ${args}`)", "interpolation"),
    ("concatenated prompt", "await agent('a' + args)", "plain string literal"),
    ("prompt from variable", "const p = 'x'\nawait agent(p)", "plain string literal"),
    ("aliased agent", "const g = agent\nawait g('x')", "plain string literal"),
    ("optional call", "await agent?.('x')", "plain string literal"),
    ("unicode escape identifier", "await \\u0061gent(args)", "backslash"),
    ("regex hiding code", "const r = /'/; await agent(args); const q = /'/", "'/'"),
    ("thenable method", "const o = {then(r) { r(agent('x')) }}\nawait o\nawait o", "method"),
    ("getter", "const o = {get p() { return agent('x') }}", "'get'"),
    ("nested workflow", "await workflow('other')", "'workflow'"),
    ("pipeline", "await pipeline(args, x => agent('x'))", "'pipeline'"),
    ("dynamic agent type", "await agent('x', {agentType: args})", "agentType"),
    ("quoted dynamic agent type", "await agent('x', {'agentType': args.t})", "agentType"),
    ("iife", "await (async () => agent('x'))()", "arrow"),
    ("global lookup", "globalThis['agent'](args)", "'globalThis'"),
    ("computed access", "const o = {}\no['agent'](args)", "computed"),
    ("spread", "await parallel([...[() => agent('a')], ...[() => agent('a')]])", "spread"),
    ("computed key", "const t = {a: 1, ['agent' + 'Type']: args}", "computed"),
    ("function keyword", "async function f() { await agent('x') }\nawait f()\nawait f()",
     "'function'"),
    ("eval", "eval(args)", "'eval'"),
    ("constructor string", "[].fill.constructor('return 1')", "'constructor'"),
    ("callback to a value helper", "JSON.stringify({}, (k, v) => agent('x'))", "arrow"),
    ("replace callback", "'aaa'.replace('a', () => agent('x'))", "arrow"),
    ("shadowed agent parameter", "await agent('a').then(agent => agent('b'))",
     "plain string literal"),
    ("tagged template", "String.raw`x`", "tagged"),
    ("unterminated string", "await agent('x)", "unterminated"),
    ("unbalanced", "await parallel([() => agent('x')", "unbalanced"),
    ("lookalike letter", "await аgent(args)", "non-ASCII"),
]


@pytest.mark.parametrize(("name", "body", "prompts"), CHECKABLE, ids=[c[0] for c in CHECKABLE])
def test_checkable_scripts_yield_every_prompt(name: str, body: str, prompts: list[str]) -> None:
    result = analyze_script(META + body)
    assert result.problem is None
    assert [a.prompt for a in result.agents] == prompts


@pytest.mark.parametrize(("name", "body", "why"), UNCHECKABLE, ids=[c[0] for c in UNCHECKABLE])
def test_scripts_that_could_start_unseen_agents_are_unchecked(name: str, body: str,
                                                              why: str) -> None:
    result = analyze_script(META + body)
    assert result.problem is not None and why in result.problem, result.problem


def test_agent_type_option_is_read() -> None:
    result = analyze_script(META + "await agent('x', {label: 'l', agentType: 'Plan'})")
    assert [(a.prompt, a.agent_type) for a in result.agents] == [("x", "Plan")]


@pytest.mark.parametrize("spelling", [
    "general-purpose", "General-Purpose", "general_purpose", "GENERAL PURPOSE",
    "general\u200b-purpose", "gеneral-purpose", "  general--purpose ", "general\u2013purpose",
    "ｇｅｎｅｒａｌ－ｐｕｒｐｏｓｅ", "general.purpose", "generalpurpose",
])
def test_agent_type_spellings_are_one_type(spelling: str) -> None:
    assert canonical_agent_type(spelling) == canonical_agent_type("general-purpose")


def test_distinct_agent_types_stay_distinct() -> None:
    assert canonical_agent_type("Explore") != canonical_agent_type("Plan")
    assert canonical_agent_type("") == canonical_agent_type(None) == \
        canonical_agent_type("general-purpose")


_PIECES = st.sampled_from(["agent(", "parallel([", "() => ", "'x'", "`y`", "\\x41", "/", "//",
                           "/*", "*/", "(", ")", "[", "]", "{", "}", ",", ":", ".", "=", "\n",
                           " ", "then(", "async ", "agentType", "...", "${", "аgent"])


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_any_text_is_read_or_refused_never_crashes(body: str) -> None:
    result = analyze_script(META + body)
    assert (result.problem is None) or not result.agents
