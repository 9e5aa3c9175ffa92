"""The paths a Bash command line can touch, however it spells them.

This is not a shell: it over-approximates. Every word of every command is taken as a
possible path (after the expansions bash would do: braces, variables, `~`, globs, relative to
every folder a `cd` in the line may have moved to), because which arguments a program opens
is the program's business. What it cannot expand safely (command substitution, `eval` of
something unknown, code piped into an interpreter, variables it cannot see) makes the whole
line unresolved, and the caller decides what that means.
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
import os
import pwd
import re
import shlex
from collections.abc import Iterator, Mapping
from typing import NamedTuple

from ._shell_rules import (
    ASSIGNERS,
    AWKS,
    CLAUDE_INFO_FLAGS,
    CLAUDE_PROGRAMS,
    CLAUDE_READ_ONLY,
    CLAUDE_READ_ONLY_COMMANDS,
    DYNAMIC_CODE,
    EMBEDDED_PATH,
    FLAT,
    HEREDOC,
    INTERPRETERS,
    KEYWORDS,
    OPERATORS,
    PATH_FILTERS,
    PATH_LISTERS,
    READ_ONLY,
    RECURSIVE_FLAGS,
    RECURSIVE_WRITERS,
    REDIRECT_READ,
    REDIRECT_WRITE,
    REVEALS,
    SHELL_RUNNERS,
    SHELLS,
    STRING_LITERAL,
    VARIABLE,
    WRAPPERS,
)

__all__ = ["ShellResolution", "Touch", "resolve_code", "resolve_command"]


class Touch(NamedTuple):
    path: str        # absolute and normalised; a glob pattern when `pattern`
    recursive: bool  # the program may walk everything under it
    write: bool      # the program may change it
    pattern: bool = False
    only: tuple[str, ...] = ()  # a walk that changes only files with these names (find -name)


class ShellResolution(NamedTuple):
    touches: tuple[Touch, ...]
    unresolved: str | None  # why the line cannot be resolved safely, if it cannot
    reveals: str | None     # a command that prints a stored credential without naming a file
    controls: str | None = None  # a run of Claude Code itself: a session of its own, its config
    # Code the line runs whose file opens are not in the line: a script, inline code, a
    # program named by its path (what the line may reach beyond the paths it spells).
    runs: str | None = None
    background: bool = False  # it leaves a job running after it returns (`&`, nohup)


MAX_DEPTH = 4
MAX_WORDS = 4096
MAX_EXPANSIONS = 256
MAX_SCRIPT_BYTES = 256 * 1024


# Programs that keep running after the line returns, or make what follows do so.
_DETACHERS = frozenset({"nohup", "setsid", "disown", "daemonize", "start-stop-daemon"})
# Programs named by a path in these folders are the system's, not code the model wrote.
_SYSTEM_PROGRAMS = ("/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/", "/usr/local/bin/")

# Stands for a `$` that bash takes literally (quoted or escaped), until expansion is done.
_LITERAL_DOLLAR = "\x01"


class Unresolvable(Exception):
    pass


class _State:
    def __init__(self, cwd: str, env: Mapping[str, str], home: str, depth: int) -> None:
        self.cwds = [cwd]
        self.env = env
        self.home = home
        self.depth = depth
        self.local: dict[str, list[str]] = {}
        self.functions: set[str] = set()
        self.touches: list[Touch] = []
        self.reveals: str | None = None
        self.controls: str | None = None
        self.runs: str | None = None
        self.background = False
        self.dotglob = False
        self.globstar = False
        self.heredocs: list[str] = []


def resolve_command(command: str, cwd: str, env: Mapping[str, str], *, home: str,
                    depth: int = 0) -> ShellResolution:
    state = _State(cwd, env, home, depth)
    try:
        _resolve_into(command, state)
    except Unresolvable as exc:
        return ShellResolution(tuple(state.touches), str(exc), state.reveals, state.controls,
                               state.runs, state.background)
    return ShellResolution(tuple(state.touches), None, state.reveals, state.controls,
                           state.runs, state.background)


def resolve_code(language: str, code: str, cwd: str, env: Mapping[str, str], *,
                 home: str) -> ShellResolution:
    """Inline code of a tool that runs it (a REPL, PowerShell): read for path literals."""
    state = _State(cwd, env, home, 0)
    try:
        _inline_code(language, code, state)
    except Unresolvable as exc:
        return ShellResolution(tuple(state.touches), str(exc), None)
    return ShellResolution(tuple(state.touches), None, None)


def _resolve_into(command: str, state: _State) -> None:
    if state.depth > MAX_DEPTH:
        raise Unresolvable("commands nested too deeply to follow")
    text, heredocs = _prescan(command)
    outer_queue = state.heredocs
    state.heredocs = [body for body, _ in heredocs]
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = ""
        words = list(_bounded(lexer))
    except ValueError as exc:  # unbalanced quotes: bash would not run it either
        raise Unresolvable(f"the command does not parse ({exc})") from None
    if "&" in words or any(w in _DETACHERS for w in words):
        state.background = True
    if "shopt" in words or "GLOBIGNORE" in text:
        state.dotglob = state.globstar = True
    pipeline: list[list[str]] = []
    for cmd, op_before in _simple_commands(words):
        pipeline = [*pipeline, cmd] if op_before in ("|", "|&") else [cmd]
        _command(cmd, state, pipeline=pipeline[:-1])
    for body in state.heredocs:  # not matched to a command: assume the worst, code
        _heredoc(body, "sh", state)
    state.heredocs = outer_queue


def _bounded(lexer: shlex.shlex) -> Iterator[str]:
    for n, word in enumerate(lexer):
        if n >= MAX_WORDS:
            raise Unresolvable("the command is too long to check")
        yield word


def _prescan(text: str) -> tuple[str, list[tuple[str, str]]]:
    """Refuse what only running the line can resolve; drop comments; make newlines
    separators; take out here-document bodies, each with the line that feeds it."""
    out: list[str] = []
    bodies: list[tuple[str, str]] = []
    pending: list[tuple[str, bool, bool]] = []  # delimiter, strip tabs, expands
    single = double = False
    line_start = 0
    i = 0
    while i < len(text):
        c = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if single:
            single = c != "'"
            if c == "$":  # literal: bash expands nothing inside single quotes
                out.append(_LITERAL_DOLLAR)
                i += 1
                continue
        elif c == "\\" and nxt:
            if nxt == "\n":  # a line continuation
                i += 2
                continue
            out.append(_LITERAL_DOLLAR if nxt == "$" else c + nxt)
            i += 2
            continue
        elif c == "'" and not double:
            if out and out[-1] == "$":
                raise Unresolvable("it uses $'...' quoting")
            single = True
        elif c == '"':
            double = not double
        elif c == "`" or (c == "$" and nxt == "("):
            raise Unresolvable("it uses command substitution")
        elif double:
            pass
        elif c in "<>" and nxt == "(":
            raise Unresolvable("it uses process substitution")
        elif c in "@!+*?" and nxt == "(":
            raise Unresolvable("it uses an extended glob")
        elif c == "#" and (not out or out[-1][-1:] in ("", " ", "\t", ";", "&", "|", "(")):
            while i < len(text) and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("<<<", i):
            out.append(" <<< ")
            i += 3
            continue
        elif text.startswith("<<", i):
            m = HEREDOC.match(text, i)
            if m is None:
                raise Unresolvable("a here-document without a delimiter")
            pending.append((m.group(3), m.group(1) == "-", not m.group(2)))
            out.append("<< " + m.group(3) + " ")
            i = m.end()
            continue
        elif c == "\n":
            runner = "".join(out)[line_start:]
            i += 1
            for delim, strip, expands in pending:
                body: list[str] = []
                while i < len(text):
                    end = text.find("\n", i)
                    end = len(text) if end < 0 else end
                    line = text[i:end]
                    i = end + 1
                    if (line.lstrip("\t") if strip else line) == delim:
                        break
                    body.append(line)
                joined = "\n".join(body)
                if expands and ("`" in joined or "$(" in joined):
                    raise Unresolvable("it uses command substitution")
                bodies.append((joined, runner))
            pending = []
            out.append(" ; ")
            line_start = len("".join(out))
            continue
        out.append(c)
        i += 1
    return "".join(out), bodies


def _simple_commands(words: list[str]) -> Iterator[tuple[list[str], str]]:
    cmd: list[str] = []
    op = ""
    for word in words:
        if word in OPERATORS and word not in ("{", "}", "!"):
            if cmd:
                yield cmd, op
            cmd, op = [], word
            continue
        if word in ("{", "}", "!") and not cmd:
            continue
        cmd.append(word)
    if cmd:
        yield cmd, op


# -- one simple command ----------------------------------------------------------------
def _command(words: list[str], state: _State, *, pipeline: list[list[str]]) -> None:
    words = _assignments(words, state)
    if len(words) >= 2 and (words[1] == "()" or words[0] == "function"):
        state.functions.add(words[1] if words[0] == "function" else words[0])
        words = [w for w in words[2 if words[0] == "function" else 1:] if w not in ("()", "{")]
    listed = False  # `for x in ...`: the words left are the loop's values, not a command
    while words and words[0] in KEYWORDS:
        if words[0] == "for" and len(words) >= 3 and words[2] == "in":
            values = [v for w in words[3:] for v in _expand(w, state)]
            state.local[words[1]] = values or [""]
            words = words[3:]
            listed = True
            break
        words = words[1:]
    if not words:
        return
    argv, redirects, strings = _split_redirects(words, state)
    for target, write in redirects:
        for value in _expand(target, state):
            _touch_value(value, state, recursive=False, write=write)
    name, args = _program(argv, state) if argv else ("", [])
    for here in strings:
        _heredoc(" ".join(_expand(here, state, lenient=True)), name, state)
        if name not in READ_ONLY and name not in ("tee", "jq"):
            # `make -f - <<EOF`, `m4 <<<`: a program may interpret what it is fed.
            state.runs = state.runs or f"text fed to {name}"
    if name in ASSIGNERS or (name in ("printf", "declare", "typeset", "local", "export")
                             and any(a in ("-v", "-n") for a in args)):
        raise Unresolvable(f"{name} sets variables from data the check cannot see")
    if not argv:
        return
    _check_reveals(name, args, state)
    piped = bool(pipeline)
    if "/" in argv[0]:
        _scan_script(argv[0], state)
        if not listed and not argv[0].startswith(_SYSTEM_PROGRAMS):
            state.runs = state.runs or argv[0]
    if name in SHELLS or name == "eval" or name in ("source", "."):
        _run_shell(name, args, state, piped)
    elif name in AWKS or _interpreter(name) is not None:
        _run_interpreter(name, args, state, piped)
    elif name == "xargs":
        _xargs(args, state, pipeline)
    elif name in state.functions and piped:
        raise Unresolvable(f"it pipes text into the shell function {name}")
    if name in ("cd", "pushd"):
        _cd(args, state)
    recursive = name not in FLAT or any(RECURSIVE_FLAGS.match(a) for a in args)
    write = name not in READ_ONLY
    recursive_write = name in RECURSIVE_WRITERS or (name == "find" and _find_writes(args))
    only = _find_names(args) if name == "find" else ()
    runs_code = name in SHELLS or name in AWKS or name == "eval" or \
        _interpreter(name) is not None
    if not runs_code:
        _embedded_invocations(argv, state)
    # The program itself is run, not changed: its own path counts as read; so does the
    # script a shell or an interpreter is given to run (`python3 tool.py`).
    program = next((i for i, w in enumerate(argv)
                    if os.path.basename(w).lower() == name), -1)
    run = {program}
    if program >= 0 and (name in SHELLS or _interpreter(name) is not None):
        script = next((i for i in range(program + 1, len(argv))
                       if not argv[i].startswith("-")), -1)
        if script > 0 and all(not a.startswith("-") or a in ("-u", "-B", "-E", "-s", "-I")
                              for a in argv[program + 1:script]):
            run.add(script)
    for i, word in enumerate(argv):
        ran = i in run
        for value in _expand(word, state):
            for candidate in _candidates(value):
                _touch_value(candidate, state, recursive=recursive and not ran,
                             write=write and not ran,
                             recursive_write=recursive_write and not ran, only=only)
            if not runs_code and any(c.isspace() for c in value.strip()):
                _probe(value, state, strict=name in SHELL_RUNNERS)


def _find_writes(args: list[str]) -> bool:
    """Does this find change files: -delete, or -exec of anything but a reader?"""
    if "-delete" in args:
        return True
    for i, arg in enumerate(args[:-1]):
        if arg in ("-exec", "-execdir", "-ok", "-okdir") and \
                os.path.basename(args[i + 1]).lower() not in READ_ONLY:
            return True
    return False


def _find_names(args: list[str]) -> tuple[str, ...]:
    """The -name patterns a find's actions are limited to, if every branch has one."""
    if any(a in ("-o", "-or", ",", "-not", "!", "-prune") for a in args):
        return ()  # alternatives or negation: the names no longer bound what is touched
    return tuple(args[i + 1].lower() for i, a in enumerate(args[:-1])
                 if a in ("-name", "-iname"))


def _embedded_invocations(argv: list[str], state: _State) -> None:
    """`docker exec c sh -c '...'`, `bwrap ... python3 -c '...'`: a shell or an interpreter
    given code further along the line runs it, whatever runs them."""
    for i, word in enumerate(argv[1:], start=1):
        base = os.path.basename(word).lower()
        rest = argv[i + 1:]
        if base in SHELLS and rest and re.fullmatch(r"-[a-z]*c[a-z]*", rest[0]):
            _run_shell(base, ["-c", *rest[1:]], state, False)
        elif (options := _interpreter(base)) and rest and rest[0] in options:
            _run_interpreter(base, rest, state, False)


def _probe(text: str, state: _State, *, strict: bool) -> None:
    """An argument with spaces may be a command line some program runs (`watch`, `ssh`,
    `find -exec sh -c`): what it touches counts. Only for programs known to run their
    argument as a shell line does a line that cannot be resolved make this one so."""
    try:
        _nested(text, state)
    except Unresolvable:
        if strict:
            raise


def _assignments(words: list[str], state: _State) -> list[str]:
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("export", "local", "declare", "readonly", "typeset") and i + 1 < len(words):
            i += 1
            continue
        name, eq, value = word.partition("=")
        if not eq or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\+?", name):
            break
        values = _expand(value, state, tilde_after_colon=True)
        state.local[name.rstrip("+")] = values
        for v in values:
            for candidate in _candidates(v):
                _touch_value(candidate, state, recursive=False, write=False)
        i += 1
    return words[i:]


def _split_redirects(words: list[str], state: _State
                     ) -> tuple[list[str], list[tuple[str, bool]], list[str]]:
    """Arguments, redirection targets (and whether written), here-strings and the bodies
    of this command's here-documents."""
    argv: list[str] = []
    redirects: list[tuple[str, bool]] = []
    strings: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        follows = words[i + 1] if i + 1 < len(words) else ""
        if word in REDIRECT_WRITE or word in REDIRECT_READ:
            if follows and not follows.isdigit() and follows != "-":
                redirects.append((follows, word in REDIRECT_WRITE))
            i += 2
            continue
        if word in ("<<", "<<-"):
            if state.heredocs:  # taken out by _prescan, in order
                strings.append(state.heredocs.pop(0))
            i += 2
            continue
        if word == "<<<":
            strings.append(follows)
            i += 2
            continue
        if word.isdigit() and follows in (REDIRECT_WRITE | REDIRECT_READ):
            i += 1
            continue
        argv.append(word)
        i += 1
    return argv, redirects, strings


def _program(argv: list[str], state: _State) -> tuple[str, list[str]]:
    """The program a command line runs (past sudo, env, timeout...), and its arguments."""
    i = 0
    while i < len(argv):
        values = _expand(argv[i], state)
        name = os.path.basename(values[0]) if values else ""
        if "=" in argv[i] and i > 0:
            i += 1
            continue
        if name in WRAPPERS and i + 1 < len(argv):
            i += 1
            while i < len(argv) and (argv[i].startswith("-") or "=" in argv[i]
                                     or (name == "timeout" and argv[i][:1].isdigit())):
                i += 1
            if name == "env" and i >= len(argv):
                return "env", []
            continue
        return name.lower(), argv[i + 1:]
    return (os.path.basename(argv[0]).lower() if argv else ""), []


def _interpreter(name: str) -> tuple[str, ...] | None:
    base = re.sub(r"[\d.]+$", "", name)  # python3.12, perl5.36
    return INTERPRETERS.get(base)


def _check_reveals(name: str, args: list[str], state: _State) -> None:
    for (program, *words), what in REVEALS:
        if fnmatch.fnmatchcase(name, program) and all(w in args for w in words):
            state.reveals = f"it prints {what}"
    if (name in CLAUDE_PROGRAMS and not _claude_reads_only(args)) or (
            name in ("npx", "bunx", "pnpx", "dlx") and any("claude-code" in a for a in args)):
        state.controls = ("it runs Claude Code itself (" + " ".join([name, *args[:3]])[:80] +
                          "): a session of its own starts agents without these checks, and "
                          "its subcommands change plugins, MCP servers and settings")


def _claude_reads_only(args: list[str]) -> bool:
    words = [a for a in args if not a.startswith("-")]
    if not words:
        return bool(args) and all(a in CLAUDE_INFO_FLAGS for a in args)
    return tuple(words[:2]) in CLAUDE_READ_ONLY or words[0] in CLAUDE_READ_ONLY_COMMANDS


def _run_shell(name: str, args: list[str], state: _State, piped: bool) -> None:
    if name == "eval":
        _nested(" ".join(v for a in args for v in _expand(a, state)), state)
        return
    if name in ("source", "."):
        if not args or args[0] in ("/dev/stdin", "-", "/proc/self/fd/0", "/dev/fd/0"):
            raise Unresolvable(f"{name} reads code from standard input")
        _scan_script(args[0], state)
        return
    code = _option_value(args, ("-c",))
    if code is not None:
        _nested(" ".join(_expand(code, state)), state)
        return
    scripts = [a for a in args if not a.startswith("-") and not a.startswith("+")]
    if scripts or piped:
        state.runs = state.runs or f"a {name} script"
    if piped and (not scripts or scripts[0] in ("/dev/stdin", "-")):
        raise Unresolvable(f"it pipes code into {name}")
    if scripts:
        _scan_script(scripts[0], state)


def _nested(command: str, state: _State) -> None:
    inner = _State(state.cwds[0], state.env, state.home, state.depth + 1)
    inner.cwds = list(state.cwds)
    inner.local = dict(state.local)
    inner.functions = set(state.functions)
    try:
        _resolve_into(command, inner)
    finally:
        state.touches += inner.touches
        state.cwds += [c for c in inner.cwds if c not in state.cwds]
        state.reveals = state.reveals or inner.reveals


def _run_interpreter(name: str, args: list[str], state: _State, piped: bool) -> None:
    options = _interpreter(name) or ()
    code = _option_value(args, options) if options else None
    if name in AWKS and code is None:
        code = _awk_program(args)
    if code is not None:
        if name not in AWKS:  # awk's own file opens are literals in its program
            state.runs = state.runs or f"inline {name} code"
        _inline_code(name, code, state)
        return
    scripts = [a for a in args if not a.startswith("-")]
    if scripts and "-m" not in args and name not in ("jq", "sqlite3", "ed"):
        state.runs = state.runs or f"a {name} script"
    if piped and (not scripts or scripts[0] in ("-", "/dev/stdin")) \
            and name not in ("jq", "sqlite3", "ed"):
        raise Unresolvable(f"it pipes code into {name}")
    if scripts and "-m" not in args:
        _scan_script(scripts[0], state)


def _scan_script(word: str, state: _State) -> None:
    """A script the line runs may have been written a moment ago to read what the line
    may not: the paths it spells out count as the line's. (What it builds at run time
    does not: only a sandbox confines a program.)"""
    for value in _expand(word, state):
        for cwd in state.cwds:
            path = os.path.join(cwd, value)
            try:
                if not os.path.isfile(path) or os.path.getsize(path) > MAX_SCRIPT_BYTES:
                    continue
                with open(path, encoding="utf-8", errors="replace") as fh:
                    code = fh.read()
            except OSError:
                continue
            found = [m.group(1) if m.group(1) is not None else m.group(2)
                     for m in STRING_LITERAL.finditer(code)]
            found += [m.group(0) for m in EMBEDDED_PATH.finditer(code)]
            for literal in found[:MAX_WORDS]:
                _touch_value(literal, state, recursive=False, write=False)


def _option_value(args: list[str], options: tuple[str, ...]) -> str | None:
    for i, arg in enumerate(args):
        for opt in options:
            if arg == opt and i + 1 < len(args):
                return args[i + 1]
            if opt.startswith("--") and arg.startswith(opt + "="):
                return arg[len(opt) + 1:]
            if len(opt) == 2 and arg.startswith(opt) and len(arg) > 2 and opt != "-e":
                return arg[2:]
            if len(opt) == 2 and arg.startswith("-") and not arg.startswith("--") \
                    and arg.endswith(opt[1]) and len(arg) > 2 and i + 1 < len(args):
                return args[i + 1]  # -Sc 'code', -we 'code'
    return None


def _awk_program(args: list[str]) -> str | None:
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-f", "--file"):
            return None
        if arg in ("-v", "-F", "--assign", "--field-separator"):
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return arg
    return None


def _inline_code(name: str, code: str, state: _State) -> None:
    code = " ".join(_expand(code, state, lenient=True))
    if DYNAMIC_CODE.search(code):
        raise Unresolvable(f"its inline {name} code builds paths or code at run time")
    literals = [m.group(1) if m.group(1) is not None else m.group(2)
                for m in STRING_LITERAL.finditer(code)]
    for value in literals + [m.group(0) for m in EMBEDDED_PATH.finditer(code)]:
        _touch_value(value, state, recursive=True, write=True, recursive_write=False)


def _heredoc(body: str, runner: str, state: _State) -> None:
    """A here-document or here-string: code when it feeds a shell or an interpreter."""
    names = [runner]
    if any(n in SHELLS or n in ("eval", "source", ".") for n in names):
        _nested(body, state)
    elif code_runner := next((n for n in names if n in AWKS or (_interpreter(n) is not None
                              and n not in ("jq", "sqlite3"))), None):
        _inline_code(code_runner, body, state)
    elif "xargs" in names:
        raise Unresolvable("xargs builds command lines from a here-document")
    else:  # data: only what plainly names a path counts
        for match in EMBEDDED_PATH.finditer(body):
            _touch_value(match.group(0), state, recursive=False, write=False)


def _xargs(args: list[str], state: _State, pipeline: list[list[str]]) -> None:
    names = [_program(cmd, state) for cmd in pipeline]
    listed = bool(names) and names[0][0] in PATH_LISTERS and all(
        n in PATH_FILTERS and "-o" not in a and "--only-matching" not in a
        for n, a in names[1:])
    if not listed:
        raise Unresolvable("xargs builds command lines from text another command prints")
    code = _option_value(args, ("-c",))
    if code is not None:
        _nested(code, state)


def _cd(args: list[str], state: _State) -> None:
    targets = [a for a in args if not a.startswith("-") or a == "-"]
    if not targets:
        new = [state.home]
    elif targets[0] == "-":
        return  # back to a folder already among the candidates
    else:
        new = [os.path.normpath(os.path.join(cwd, value)) for value in _expand(targets[0], state)
               for cwd in state.cwds]
    state.cwds += [c for c in new if c not in state.cwds]


# -- words ---------------------------------------------------------------------------------
def _expand(word: str, state: _State, *, tilde_after_colon: bool = False,
            lenient: bool = False) -> list[str]:
    """Brace, variable and tilde expansion. `lenient` keeps variables it cannot see as
    written: inline code's own `$x` belongs to the interpreter, not to bash."""
    values = _braces(word) if not lenient else [word]
    out: list[str] = []
    for value in values:
        try:
            out += _variables(value, state)
        except Unresolvable:
            if not lenient:
                raise
            out.append(value)
        if len(out) > MAX_EXPANSIONS:
            raise Unresolvable("the command expands to too many words to check")
    return [_tilde(v, state, after_colon=tilde_after_colon).replace(_LITERAL_DOLLAR, "$")
            for v in out]


def _braces(word: str) -> list[str]:
    results = [word]
    for _ in range(8):
        changed = False
        nxt: list[str] = []
        for w in results:
            parts = _one_brace(w)
            if parts is None:
                nxt.append(w)
            else:
                nxt += parts
                changed = True
        results = nxt
        if len(results) > MAX_EXPANSIONS:
            raise Unresolvable("the command expands to too many words to check")
        if not changed:
            return results
    raise Unresolvable("brace expansion nested too deeply to follow")


def _one_brace(word: str) -> list[str] | None:
    for start in [m.start() for m in re.finditer(r"(?<!\$)\{", word)]:
        depth = 0
        for end in range(start, len(word)):
            if word[end] == "{":
                depth += 1
            elif word[end] == "}":
                depth -= 1
                if depth == 0:
                    inner = word[start + 1:end]
                    items = _brace_items(inner)
                    if items is not None:
                        return [word[:start] + item + word[end + 1:] for item in items]
                    break
    return None


def _brace_items(inner: str) -> list[str] | None:
    rng = re.fullmatch(r"(-?\d+)\.\.(-?\d+)(?:\.\.-?\d+)?|([A-Za-z])\.\.([A-Za-z])", inner)
    if rng:
        if rng.group(1) is not None:
            a, b = int(rng.group(1)), int(rng.group(2))
            if abs(b - a) > MAX_EXPANSIONS:
                raise Unresolvable("the command expands to too many words to check")
            step = 1 if b >= a else -1
            return [str(n) for n in range(a, b + step, step)]
        a_c, b_c = ord(rng.group(3)), ord(rng.group(4))
        step = 1 if b_c >= a_c else -1
        return [chr(n) for n in range(a_c, b_c + step, step)]
    items, depth, cur = [], 0, ""
    for c in inner:
        if c == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += (c == "{") - (c == "}")
        cur += c
    if not items:
        return None
    return [*items, cur]


def _variables(word: str, state: _State) -> list[str]:
    match = VARIABLE.search(word)
    if match is None:
        return [word]
    head, tail = word[:match.start()], word[match.end():]
    return [head + value + rest for value in _variable(match, state)
            for rest in _variables(tail, state)]


def _variable(match: re.Match[str], state: _State) -> list[str]:
    braced, plain, special = match.groups()
    if special is not None:
        if special == "_":
            raise Unresolvable("it uses $_")
        return ["0"] if special in "?#$!-" else [""]
    name, default = plain, None
    if braced is not None:
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?::?[-=](.*))?", braced)
        if m is None:
            if re.fullmatch(r"[0-9@*#?]", braced):
                return [""]
            raise Unresolvable(f"it uses the expansion ${{{braced}}}")
        name, default = m.group(1), m.group(2)
    assert name is not None
    if name in state.local:
        return state.local[name]
    if name == "HOME":
        return [state.home]
    if name in ("PWD", "OLDPWD"):
        return list(state.cwds)
    if name in ("RANDOM", "SECONDS", "LINENO", "UID", "EUID", "PPID", "BASHPID"):
        return ["0"]
    if name in state.env:
        return [state.env[name]]
    if default is not None:
        return _expand(default, state)
    raise Unresolvable(f"it uses the variable ${name}, which the check cannot see")


def _tilde(value: str, state: _State, *, after_colon: bool) -> str:
    def one(part: str) -> str:
        if not part.startswith("~"):
            return part
        user, sep, rest = part[1:].partition("/")
        if user == "":
            base = state.home
        elif user in ("+", "-"):
            base = state.cwds[-1]
        else:
            try:
                base = pwd.getpwnam(user).pw_dir
            except KeyError:
                return part
        return base + sep + rest if sep else base
    if after_colon:
        return ":".join(one(p) for p in value.split(":"))
    return one(value)


def _candidates(value: str) -> list[str]:
    """The strings in one word that a program may open: the word, what follows `=` or `:`
    (`--file=x`, `if=x`, `host:x`), what follows a short option (`-fx`), and paths inside."""
    out = [value]
    for sep in ("=", ":"):
        if sep in value:
            out += [part for part in value.split(sep)[1:] if part]
    if re.match(r"^-[A-Za-z][^-]", value):
        out.append(value[2:])
    out += [m.group(0) for m in EMBEDDED_PATH.finditer(value) if m.group(0) != value]
    return [c for c in dict.fromkeys(out) if c and c not in ("-", "--")]


def _touch_value(value: str, state: _State, *, recursive: bool, write: bool,
                 recursive_write: bool = False, only: tuple[str, ...] = ()) -> None:
    if not value or (value.startswith("-") and "/" not in value) or "\x00" in value:
        return
    value = _tilde(value, state, after_colon=False)
    bases = [""] if value.startswith("/") else state.cwds
    for base in bases:
        path = os.path.normpath(os.path.join(base, value) if base else value)
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
        if re.search(r"[*?\[]", value):
            walks = recursive or "**" in value
            state.touches.append(Touch(path, walks, recursive_write if walks else write, True,
                                       only if walks else ()))
            for hit in _glob(path, state)[:MAX_EXPANSIONS]:
                deep = recursive and os.path.isdir(hit)
                state.touches.append(Touch(hit, deep, recursive_write if deep else write,
                                           only=only if deep else ()))
        else:
            deep = recursive and os.path.isdir(path)
            state.touches.append(Touch(path, deep, recursive_write if deep else write,
                                       only=only if deep else ()))


def _glob(pattern: str, state: _State) -> list[str]:
    try:
        return list(itertools.islice(glob.iglob(pattern, recursive=state.globstar,
                                                include_hidden=state.dotglob), MAX_EXPANSIONS))
    except (OSError, ValueError, re.error):
        return []
