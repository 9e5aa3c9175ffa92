"""Running a main-agent Bash line with the plugin's protected folders hidden.

The path check decides on what a line spells. A line that builds a path at run time
(`$(printf ...)`, `base64 -d`, a script, a compiled program) or walks a folder that holds
the protected ones (`grep -r TODO ~`, `tar c ~`) cannot be decided that way. Such a line
is not denied: it is rewritten (PreToolUse `updatedInput`, which still goes through the
user's permission rules) to run under bubblewrap in a mount namespace where the data
folder, Claude Code's transcripts and agents' task outputs are empty folders. Whatever
the line computes, it finds nothing there; everything else is the same file system, read
and written as before.

A private PID namespace with its own /proc goes with it: otherwise `/proc/<pid>/root` of
any process outside (Claude Code's own) is a way back to the real folders. So a wrapped
line sees only its own processes, and a job it leaves running in the background ends
with it (the engine asks for `run_in_background` instead). The mounts are locked to the
namespace: a nested user namespace cannot unmount them to look beneath.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Iterable

from ..bwrap import try_bwrap

__all__ = ["available", "claude_sandbox", "hidden_mounts", "uncovered", "wrap"]

# The wrapped line runs in a fresh bash given the outer shell's functions and aliases on
# descriptor 7 (Claude Code's shell snapshot defines the user's; a version manager's can
# pass the 128 KiB an environment variable may hold), and hands its final folder back on
# descriptor 9 so that a `cd` in it still moves the session, as it would unwrapped.
_INNER = ('. /dev/fd/7; exec 7<&-; shopt -s expand_aliases; '
          'trap \'__so_rc=$?; pwd -P >&9 2>/dev/null; exit $__so_rc\' EXIT; eval "$1"')


def wrap(command: str, hidden: Iterable[str], readonly: Iterable[str] = ()) -> str:
    """`command` as a bash line that runs it with each of `hidden` (absolute) replaced
    by an empty folder, or by an empty file for a file, and each of `readonly` read-only."""
    args = ["bwrap", "--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
            "--die-with-parent", *readonly_mounts(readonly), *hidden_mounts(hidden)]
    inner = " ".join([*args, "--", "/bin/bash", "-c", shlex.quote(_INNER), "bash",
                      shlex.quote(command)])
    # The folder comes back through a command substitution (no temporary file), the
    # line's own output goes to the real standard output (descriptor 8 meanwhile).
    return (f'{{ __so_to=$({inner} 9>&1 1>&8 8>&- 7<<<"$(declare -f; alias -p)"); '
            '__so_rc=$?; } 8>&1; '
            '[ -n "$__so_to" ] && [ "$__so_to" != "$PWD" ] && cd "$__so_to"; '
            f'[ -z "$__so_to" ] && ! {_PROBE} 2>/dev/null && echo {shlex.quote(_NO_START)} >&2; '
            '(exit $__so_rc)')


# Only when the line left no folder behind (bwrap may not have started it) is bwrap tried
# again, to tell that apart from a line that failed by itself.
_PROBE = "bwrap --dev-bind / / --unshare-pid --proc /proc true"
_NO_START = ("smart-orchestrator: this line must run with the plugin's data folder hidden "
             "and bubblewrap could not start here (inside another sandbox?); write it "
             "with plain paths, or ask the user to set [tools] veil")


_NEVER_READ_ONLY = frozenset(p for p in ("/", "/etc", os.path.expanduser("~"),
                                         os.environ.get("HOME")) if p)


def _guard_point(path: str) -> str | None:
    """What to make read-only so that `path` cannot be written or created: itself, its
    folder when it does not exist (made first if need be: the project's `.claude`), or
    None when nobody here could create it, or when the folder is too wide to freeze (the
    home, `/`, `/etc` for root, where nothing is made either)."""
    if os.path.lexists(path):
        return path
    parent = os.path.dirname(path)
    if os.path.exists(parent) and not os.access(parent, os.W_OK):
        return None
    if parent in _NEVER_READ_ONLY or os.path.realpath(parent) in _NEVER_READ_ONLY:
        return None
    target = parent
    try:
        os.makedirs(target, exist_ok=True)
    except OSError:
        return None
    return target


def readonly_mounts(paths: Iterable[str]) -> list[str]:
    """bwrap arguments that make each path read-only. One that does not exist yet is
    kept from being created by making its folder read-only, made first where it can be
    (the project's `.claude`): a confined line must not write what the main agent may
    not, such as `.claude/settings.local.json`, which Claude Code reads back at once."""
    out: list[str] = []
    seen: set[str] = set()
    for path in paths:
        target = _guard_point(path)
        if target is None:
            continue
        for form in dict.fromkeys((target, os.path.realpath(target))):
            if form not in seen and os.path.exists(form) and form != "/":
                seen.add(form)
                out += ["--ro-bind", shlex.quote(form), shlex.quote(form)]
    return out


def hidden_mounts(hidden: Iterable[str]) -> list[str]:
    """bwrap arguments that cover each path, as spelled and as it resolves (a symlinked
    data folder is hidden at its target too). Paths that do not exist need nothing."""
    forms = {form for path in hidden for form in (path, os.path.realpath(path))
             if os.path.lexists(form) and not os.path.islink(form)}
    folders = sorted(f for f in forms if os.path.isdir(f))
    # A folder's mount hides what lies under it; mounting a file there as well would
    # make its name appear in the empty folder.
    covered = [f for f in folders if not any(f.startswith(d + "/") for d in folders)]
    out: list[str] = []
    for folder in covered:
        out += ["--tmpfs", shlex.quote(folder)]
    for file in sorted(forms - set(folders)):
        if os.path.isfile(file) and not any(file.startswith(d + "/") for d in covered):
            out += ["--ro-bind", "/dev/null", shlex.quote(file)]
    return out


@functools.cache
def available() -> tuple[bool, str]:
    """Can this machine run the veil: bubblewrap present, and allowed to make the user,
    mount and PID namespaces it needs (some containers forbid them)?"""
    if shutil.which("bwrap") is None:
        return False, "bubblewrap is not installed (apt-get install bubblewrap)"
    with tempfile.TemporaryDirectory(prefix="so-veil-probe-") as probe:
        return try_bwrap(["--dev-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
                          "--die-with-parent", "--tmpfs", probe, "/bin/sh", "-c", "true"], 20)


def claude_sandbox(settings: Iterable[str], home: str) -> tuple[bool, list[str]]:
    """Is Claude Code's own Bash sandbox on, by the settings files given from the lowest
    precedence to the highest (the last one that says decides), and what does it keep
    from being read (`sandbox.filesystem.denyRead` of all of them, as absolute paths)?
    Bubblewrap cannot start inside it, so there it is the sandbox that must hide the
    folders. A `--settings` flag is not seen here; the line itself then says it failed."""
    enabled = False
    denied: list[str] = []
    for path in settings:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            continue
        box = data.get("sandbox") if isinstance(data, dict) else None
        if not isinstance(box, dict):
            continue
        if isinstance(box.get("enabled"), bool):
            enabled = box["enabled"]
        files = box.get("filesystem")
        entries = files.get("denyRead") if isinstance(files, dict) else None
        for entry in entries if isinstance(entries, list) else []:
            if isinstance(entry, str) and entry:
                denied.append(os.path.normpath(
                    home + entry[1:] if entry.startswith("~/") else "/" + entry.lstrip("/")))
    return enabled, denied


def uncovered(needed: Iterable[str], denied: Iterable[str]) -> list[str]:
    """Which of `needed` no entry of `denied` covers (itself or a folder above it)."""
    roots = [d.rstrip("/") for d in denied]
    return [n for n in needed
            if not any(n == r or n.startswith(r + "/") for r in roots)]
