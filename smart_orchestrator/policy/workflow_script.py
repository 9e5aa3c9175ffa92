"""What a `Workflow` script will ask of agents, read without running it.

A workflow script is JavaScript whose `agent(prompt, opts)` calls start subagents that no
PreToolUse hook sees. The policy can check them only when it knows every prompt and how
many agents there can be, so a script is *checkable* only in a small, loop-free subset:

- every `agent(...)` call has a plain string literal as its prompt (no interpolation,
  no concatenation), and `agentType` values are literals;
- nothing can run a piece of code twice: no loops, no named or stored functions (arrow
  functions only as the thunks of a `parallel([...])` array literal or as `then`/`catch`/
  `finally` callbacks), only a short list of callable names (no `pipeline`, `workflow`,
  `map`, `sort`...), no spread, no computed member access, no getters or methods;
- nothing this reader could mis-tokenize: no `/` outside comments (a regular expression
  could hide code from it), no backslash outside strings (`\\u0061gent` is `agent`).

Each call site then runs at most once, so the number of call sites bounds the number of
agents. Anything else is reported with the first reason, and the policy decides.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["ScriptAgent", "ScriptAnalysis", "analyze_script"]

# Callable names that cannot run a callback more than once (or take none).
_CALLABLE = frozenset({
    "agent", "parallel", "phase", "log", "then", "catch", "finally", "stringify", "parse",
    "String", "Number", "Boolean", "join", "trim", "slice", "includes", "startsWith",
    "endsWith", "toLowerCase", "toUpperCase", "toString", "push", "split", "if", "switch",
    "Error", "TypeError", "max", "min", "floor", "ceil", "round", "abs", "keys", "values",
    "entries", "isArray", "indexOf", "replace", "replaceAll", "padStart", "padEnd", "toFixed",
})
_FORBIDDEN = frozenset({
    "for", "while", "do", "function", "class", "eval", "Function", "import", "require",
    "globalThis", "global", "window", "self", "this", "with", "Reflect", "Proxy",
    "constructor", "prototype", "__proto__", "arguments", "callee", "yield", "workflow",
    "pipeline", "setTimeout", "setInterval", "queueMicrotask", "get", "set",
    "defineProperty", "Symbol",
})
_ARROW_HOSTS = frozenset({"then", "catch", "finally"})
_KEYWORDS_BEFORE_ARRAY = frozenset({"return", "await", "typeof", "case", "in", "of", "else",
                                    "void", "delete", "export", "const", "let", "var",
                                    "async", "throw"})
_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_NUMBER = re.compile(r"\d[\w.]*")
_PUNCT = ("...", "=>", "?.", "===", "!==", "==", "!=", "<=", ">=", "&&", "||", "??", "++",
          "--", "+=", "-=", "*=", "**")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0"}


class ScriptAgent(NamedTuple):
    prompt: str
    agent_type: str | None


class ScriptAnalysis(NamedTuple):
    agents: tuple[ScriptAgent, ...]
    problem: str | None        # why the script is not checkable; None when it is
    literals: tuple[str, ...]  # every string literal, decoded


class _Tok(NamedTuple):
    kind: str   # ident | str | num | punct
    text: str   # decoded value for strings


class _Uncheckable(Exception):
    pass


def analyze_script(script: str) -> ScriptAnalysis:
    try:
        tokens = _tokenize(script)
        return _Reader(tokens).read()
    except _Uncheckable as exc:
        return ScriptAnalysis((), str(exc), ())


# -- tokens -------------------------------------------------------------------------------
def _tokenize(src: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
        elif src.startswith("//", i):
            j = src.find("\n", i)
            i = n if j < 0 else j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            if j < 0:
                raise _Uncheckable("an unterminated comment")
            i = j + 2
        elif ch == "/":
            raise _Uncheckable("a '/' (division or a regular expression)")
        elif ch == "\\":
            raise _Uncheckable("a backslash outside a string")
        elif ch in "'\"`":
            value, i = _string(src, i)
            out.append(_Tok("str", value))
        elif m := _IDENT.match(src, i):
            out.append(_Tok("ident", m.group()))
            i = m.end()
        elif m := _NUMBER.match(src, i):
            out.append(_Tok("num", m.group()))
            i = m.end()
        elif not ch.isascii():
            raise _Uncheckable(f"the non-ASCII character U+{ord(ch):04X} outside a string")
        else:
            op = next((p for p in _PUNCT if src.startswith(p, i)), ch)
            out.append(_Tok("punct", op))
            i += len(op)
    return out


def _string(src: str, i: int) -> tuple[str, int]:
    quote, i = src[i], i + 1
    parts: list[str] = []
    while i < len(src):
        ch = src[i]
        if ch == quote:
            return "".join(parts), i + 1
        if quote == "`" and src.startswith("${", i):
            raise _Uncheckable("a template literal with ${...} interpolation")
        if ch == "\\":
            value, i = _escape(src, i + 1)
            parts.append(value)
            continue
        if ch == "\n" and quote != "`":
            raise _Uncheckable("a line break inside a string")
        parts.append(ch)
        i += 1
    raise _Uncheckable("an unterminated string")


def _escape(src: str, i: int) -> tuple[str, int]:
    """A JS string escape, decoded: a secret spelled `\\x41KIA...` is still a secret."""
    if i >= len(src):
        raise _Uncheckable("an unterminated string")
    ch = src[i]
    if ch == "x":
        return chr(_hex(src[i + 1:i + 3], 2)), i + 3
    if ch == "u":
        if src.startswith("{", i + 1):
            end = src.find("}", i + 2)
            if end < 0 or end - i > 10:
                raise _Uncheckable("a malformed \\u{...} escape")
            return chr(_hex(src[i + 2:end], 0)), end + 1
        return chr(_hex(src[i + 1:i + 5], 4)), i + 5
    if ch == "\n":
        return "", i + 1
    return _ESCAPES.get(ch, ch), i + 1


def _hex(digits: str, width: int) -> int:
    if (width and len(digits) != width) or not re.fullmatch(r"[0-9A-Fa-f]{1,6}", digits):
        raise _Uncheckable("a malformed escape in a string")
    value = int(digits, 16)
    if value > 0x10FFFF:
        raise _Uncheckable("a malformed escape in a string")
    return value


# -- structure ----------------------------------------------------------------------------
class _Open(NamedTuple):
    char: str
    label: str   # for '(' the called name; for '[' "parallel" when it is parallel's array


class _Reader:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.t = tokens
        self.stack: list[_Open] = []
        self.agents: list[ScriptAgent] = []

    def read(self) -> ScriptAnalysis:
        for k, tok in enumerate(self.t):
            self._one(k, tok)
        if self.stack:
            raise _Uncheckable("unbalanced brackets")
        literals = tuple(t.text for t in self.t if t.kind == "str")
        return ScriptAnalysis(tuple(self.agents), None, literals)

    def _prev(self, k: int, back: int = 1) -> _Tok | None:
        return self.t[k - back] if k - back >= 0 else None

    def _next(self, k: int, ahead: int = 1) -> _Tok | None:
        return self.t[k + ahead] if k + ahead < len(self.t) else None

    def _one(self, k: int, tok: _Tok) -> None:
        prev, nxt = self._prev(k), self._next(k)
        if tok.kind == "ident":
            self._ident(k, tok, prev, nxt)
        elif tok.kind == "str":
            if prev is not None and (prev.text in (")", "]") or (
                    prev.kind == "ident" and prev.text not in _KEYWORDS_BEFORE_ARRAY)):
                raise _Uncheckable("a tagged template")
            if tok.text == "agentType" and nxt is not None and nxt.text == ":":
                self._agent_type_value(k + 2)
        elif tok.text == "...":
            raise _Uncheckable("spread syntax ('...')")
        elif tok.text == "=>":
            self._arrow(k)
        elif tok.text in ("(", "[", "{"):
            self._open(k, tok, prev)
        elif tok.text in (")", "]", "}"):
            self._close(k, tok)

    def _ident(self, k: int, tok: _Tok, prev: _Tok | None, nxt: _Tok | None) -> None:
        name = tok.text
        member = prev is not None and prev.text in (".", "?.")
        if name in _FORBIDDEN and not (member and name in ("get", "set")):
            raise _Uncheckable(f"'{name}'")
        if name == "agent" and not member:
            self._agent_call(k)
        if name == "agentType":
            if nxt is None or nxt.text != ":":
                raise _Uncheckable("an 'agentType' that is not a literal property")
            self._agent_type_value(k + 2)
        if nxt is not None and nxt.text == "(" and name not in _CALLABLE and \
                name not in _KEYWORDS_BEFORE_ARRAY:
            raise _Uncheckable(f"a call to '{name}' (only agent, parallel, phase, log and "
                               "plain value functions may be called)")

    def _agent_call(self, k: int) -> None:
        call, arg, after = self._next(k), self._next(k, 2), self._next(k, 3)
        if call is None or call.text != "(" or arg is None or arg.kind != "str" or \
                after is None or after.text not in (",", ")"):
            raise _Uncheckable("an agent() call whose prompt is not a plain string literal")
        agent_type = None
        depth = 0
        for j in range(k + 1, len(self.t)):
            t = self.t[j]
            if t.text in ("(", "[", "{"):
                depth += 1
            elif t.text in (")", "]", "}"):
                depth -= 1
                if depth == 0:
                    break
            elif t.text == "agentType" or (t.kind == "str" and t.text == "agentType"):
                value = self._next(j, 2)
                agent_type = value.text if value is not None else None
        self.agents.append(ScriptAgent(arg.text, agent_type))

    def _agent_type_value(self, k: int) -> None:
        value = self.t[k] if k < len(self.t) else None
        after = self._next(k)
        if value is None or value.kind != "str" or after is None or \
                after.text not in (",", "}"):
            raise _Uncheckable("an agentType that is not a string literal")

    def _open(self, k: int, tok: _Tok, prev: _Tok | None) -> None:
        label = ""
        if tok.text == "(" and prev is not None and (prev.text in (")", "]", "?.")
                                                     or prev.kind in ("str", "num")):
            raise _Uncheckable("a call of a computed expression ('(...)(...)')")
        if tok.text == "(" and prev is not None and prev.kind == "ident":
            label = prev.text
        elif tok.text == "[":
            if prev is not None and (prev.text in (")", "]", "?.") or prev.kind in ("str", "num")
                                     or (prev.kind == "ident"
                                         and prev.text not in _KEYWORDS_BEFORE_ARRAY)):
                raise _Uncheckable("computed member access ('x[...]')")
            if prev is not None and prev.text in ("{", ",") and self.stack and \
                    self.stack[-1].char == "{":
                raise _Uncheckable("a computed property name ('{[k]: v}')")
            before = self._prev(k, 2)
            if prev is not None and prev.text == "(" and before is not None and \
                    before.text == "parallel":
                label = "parallel"
        elif tok.text == "{" and prev is not None and prev.text == ")":
            self._check_block_after_parens(k)
        self.stack.append(_Open(tok.text, label))

    def _check_block_after_parens(self, k: int) -> None:
        """`name(...) {` is a method, getter or function body unless `name` is a statement."""
        j = self._open_paren(k - 1)
        head = self._prev(j) if j >= 0 else None
        if head is None or head.text not in ("if", "switch", "catch"):
            raise _Uncheckable("a method or function body")
        if head.text == "catch" and (before := self._prev(j, 2)) is not None and \
                before.text in (".", "?."):
            raise _Uncheckable("a method or function body")

    def _open_paren(self, j: int) -> int:
        """The index of the `(` that the `)` at `j` closes (or -1: none)."""
        depth = 0
        while j >= 0:
            t = self.t[j].text
            depth += 1 if t == ")" else -1 if t == "(" else 0
            if depth == 0:
                break
            j -= 1
        return j

    def _close(self, k: int, tok: _Tok) -> None:
        want = {")": "(", "]": "[", "}": "{"}[tok.text]
        if not self.stack or self.stack[-1].char != want:
            raise _Uncheckable("unbalanced brackets")
        self.stack.pop()

    def _arrow(self, k: int) -> None:
        """Arrow functions run once only where their host calls them once."""
        prev = self._prev(k)
        j = k - 1  # where the parameters start
        if prev is not None and prev.text == ")":
            j = self._open_paren(j)
        before = self._prev(j)
        if before is not None and before.text == "async":
            before = self._prev(j, 2)
        host = self.stack[-1] if self.stack else None
        in_parallel = host is not None and host.char == "[" and host.label == "parallel"
        in_callback = host is not None and host.char == "(" and host.label in _ARROW_HOSTS
        if before is None or before.text not in ("[", ",", "(") or not (in_parallel
                                                                       or in_callback):
            raise _Uncheckable("an arrow function outside a parallel([...]) thunk or a "
                               "then/catch/finally callback")
