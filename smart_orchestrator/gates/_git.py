"""The change under review as git sees it: a tree id for the working copy, and its diff.

The working copy's tree is written through a temporary index (a copy of the real one, so
git's stat cache keeps it fast) with `git add -A`: tracked and untracked, non-ignored files
count, the user's index and working tree are untouched. Like `git stash create`, this adds
loose objects that `git gc` collects.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, OrchestratorError

__all__ = ["Change", "GitError", "Snapshot", "added_lines", "blob_text", "snapshot"]

GIT_TIMEOUT_S = 120.0
# Variables that would point git at another repository or index than the project's.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                 "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX")


class GitError(OrchestratorError):
    """git failed or the project is not a git work tree."""


@dataclass(frozen=True, slots=True)
class Change:
    path: str
    status: str        # A, M, D, T (type change)
    blob: str | None   # the new content's blob id; None when deleted


@dataclass(frozen=True, slots=True)
class Snapshot:
    root: Path
    tree: str
    base_tree: str
    base: str
    changes: tuple[Change, ...]


def _env(index: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env["GIT_OPTIONAL_LOCKS"] = "0"
    env["LC_ALL"] = "C"
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    return env


def git(args: list[str], cwd: Path, *, index: Path | None = None, input: bytes | None = None,
        check: bool = True) -> bytes:
    try:
        proc = subprocess.run(["git", "-c", "core.quotepath=off", *args], cwd=cwd,
                              env=_env(index), input=input, capture_output=True,
                              timeout=GIT_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise GitError("git is not installed", hint="quality gates need git") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {args[0]} took more than {GIT_TIMEOUT_S:g} s") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {err[0] if err else proc.returncode}")
    return proc.stdout


def repo_root(project_dir: Path) -> Path:
    try:
        out = git(["rev-parse", "--show-toplevel"], project_dir)
    except GitError as exc:
        raise GitError(f"{project_dir} is not inside a git work tree",
                       hint="quality gates cache results by git tree; run `git init`") from exc
    return Path(out.decode().strip())


def working_tree(root: Path) -> str:
    """The tree id of the working copy as `git add -A` would stage it."""
    real_index = Path(git(["rev-parse", "--git-path", "index"], root).decode().strip())
    if not real_index.is_absolute():
        real_index = root / real_index
    with tempfile.TemporaryDirectory(prefix="so-gates-") as tmp:
        index = Path(tmp) / "index"
        if real_index.is_file():
            shutil.copy2(real_index, index)
        git(["add", "-A", "--", "."], root, index=index)
        return git(["write-tree"], root, index=index).decode().strip()


def base_tree(root: Path, base: str) -> str:
    head = git(["rev-parse", "--verify", "-q", "HEAD"], root, check=False).strip()
    if not head:  # no commit yet: everything is the change
        return git(["hash-object", "-t", "tree", "-w", "--stdin"], root, input=b"").decode().strip()
    rev = "HEAD"
    if base != "HEAD":
        found = git(["merge-base", "HEAD", base], root, check=False).strip()
        if not found:
            raise ConfigError(f"gates.base: revision {base!r} has no common history with HEAD",
                              hint="fetch it, or set base to an existing branch or commit")
        rev = found.decode()
    return git(["rev-parse", f"{rev}^{{tree}}"], root).decode().strip()


def changes(root: Path, old: str, new: str) -> tuple[Change, ...]:
    raw = git(["diff-tree", "-r", "-z", "--no-renames", "--raw", old, new], root)
    fields = raw.split(b"\0")
    out: list[Change] = []
    for i in range(0, len(fields) - 1, 2):
        meta = fields[i].decode().split()
        if len(meta) < 5:
            continue
        status, new_blob = meta[4][0], meta[3]
        blob = None if status == "D" or set(new_blob) == {"0"} else new_blob
        out.append(Change(fields[i + 1].decode("utf-8", "surrogateescape"), status, blob))
    return tuple(out)


def snapshot(project_dir: Path, base: str) -> Snapshot:
    root = repo_root(project_dir)
    tree = working_tree(root)
    old = base_tree(root, base)
    return Snapshot(root, tree, old, base, changes(root, old, tree))


def added_lines(root: Path, old: str, new: str, *, max_bytes: int
                ) -> tuple[dict[str, list[tuple[int, str]]], bool]:
    """Lines the change adds, per path, with their line numbers in the new file.

    Returns (lines, complete); `complete` is False when the diff was cut at `max_bytes`.
    Binary files have no lines.
    """
    raw = git(["diff-tree", "-r", "-p", "-U0", "--no-color", "--no-ext-diff", "--no-renames",
               "--no-textconv", old, new], root)
    complete = len(raw) <= max_bytes
    text = raw[:max_bytes].decode("utf-8", "replace")
    out: dict[str, list[tuple[int, str]]] = {}
    current: list[tuple[int, str]] | None = None
    lineno = 0
    for line in text.split("\n"):
        if line.startswith("+++ "):
            # git ends the name with a tab when it contains a space
            target = line[4:].removesuffix("\t")
            current = None if target == "/dev/null" else out.setdefault(_unquote(target)[2:], [])
        elif line.startswith("@@ "):
            lineno = _hunk_start(line)
        elif line.startswith("diff --git "):
            current = None
        elif current is not None and line.startswith("+"):
            current.append((lineno, line[1:]))
            lineno += 1
    return out, complete


def blob_text(root: Path, blob: str, max_bytes: int) -> str | None:
    data = git(["cat-file", "blob", blob], root)
    if len(data) > max_bytes or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def _hunk_start(header: str) -> int:
    # "@@ -a,b +c,d @@": the added side starts at line c.
    plus = header.split(" ")[2]
    return int(plus[1:].split(",")[0] or 0)


def _unquote(path: str) -> str:
    """git C-quotes paths with unusual bytes even with core.quotepath off."""
    if not (path.startswith('"') and path.endswith('"')):
        return path
    body, out, i = path[1:-1], bytearray(), 0
    escapes = {"n": 10, "t": 9, '"': 34, "\\": 92, "a": 7, "b": 8, "f": 12, "r": 13, "v": 11}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and i + 3 < len(body) + 1:
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(escapes.get(nxt, ord(nxt)))
            i += 2
            continue
        out += c.encode("utf-8")
        i += 1
    return out.decode("utf-8", "replace")
