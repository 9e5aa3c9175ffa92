"""Where L3 (project) and L4 (environment) context comes from.

A task *names* a file when its text holds a path that exists in the project; it *hints* at
one when it mentions a module or identifier that is some file's name (`the admission
module` -> `.../admission.py`). Files that hold credentials by convention are never read,
and anything that looks like a secret in the others is redacted before it reaches a prompt.
"""

from __future__ import annotations

import platform
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..detect.secrets import redact_text, scan_text
from .cache import ContextCache

__all__ = ["FileRef", "environment_summary", "hinted_files", "memory_files", "named_files",
           "read_project_file"]

MEMORY_FILES = ("CLAUDE.md", ".claude/CLAUDE.md")
MAX_HINTED = 5
_PATH_RE = re.compile(r"(?<![\w@/.-])((?:\.{0,2}/)?(?:[\w.@+-]+/)*[\w.@+-]+\.[A-Za-z][\w]{0,9})"
                      r"(?::\d+(?:-\d+)?)?")
_WORD_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# "the pricing module": the word before such a noun names the file the task is about.
_NAMED_BY_NOUN = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\s+(?:module|file|package|class|"
                            r"script|component|service|helper|tests?)\b", re.I)
# Names so common that matching them says nothing about what a task needs.
_GENERIC = frozenset({
    "__init__", "__main__", "index", "main", "utils", "util", "helpers", "common", "base",
    "types", "test", "tests", "conftest", "setup", "readme", "license", "changelog", "core",
    "init", "app", "data", "file", "files", "code", "module", "modules", "function", "class",
    "method", "the", "this", "that", "with", "from", "into", "should", "must", "make", "add",
    "fix", "update", "write", "read", "use", "using", "test_", "docs", "doc", "example",
    "examples", "src", "lib", "package", "new", "all", "each", "their", "there", "what", "when",
    "where", "which", "while", "about", "after", "before", "error", "errors", "change", "changes",
    "task",
})
_SENSITIVE = re.compile(r"(^|/)(\.env(\.[\w.-]+)?|\.netrc|\.pgpass|id_(rsa|dsa|ecdsa|ed25519)"
                        r"(\.pub)?|[^/]*\.(pem|key|p12|pfx|jks|keystore)|credentials[^/]*|"
                        r"\.git/.*|secrets?\.(ya?ml|json|toml))$", re.I)


@dataclass(frozen=True, slots=True)
class FileRef:
    path: str      # relative to the project, POSIX
    reason: str    # "memory" | "named" | "hinted"


def _inside(root: Path, rel: str) -> Path | None:
    """The file `rel` under `root`, refusing anything that resolves outside it."""
    if not rel or _SENSITIVE.search(rel):
        return None
    try:
        full = (root / rel).resolve()
        full.relative_to(root.resolve())
    except (OSError, ValueError):
        return None
    return full if full.is_file() else None


def read_project_file(root: Path, rel: str, cache: ContextCache) -> str | None:
    full = _inside(root, rel)
    if full is None:
        return None
    text = cache.text(full)
    if text is None:
        return None
    findings = scan_text(text)
    return redact_text(text, findings) if findings else text


def memory_files(root: Path) -> list[FileRef]:
    return [FileRef(name, "memory") for name in MEMORY_FILES if _inside(root, name)]


def named_files(text: str, root: Path) -> list[FileRef]:
    seen: dict[str, None] = {}
    for m in _PATH_RE.finditer(text):
        rel = PurePosixPath(m.group(1)).as_posix().removeprefix("./")
        if rel not in seen and _inside(root, rel) is not None:
            seen[rel] = None
    return [FileRef(p, "named") for p in seen if p not in MEMORY_FILES]


def _task_words(text: str) -> tuple[set[str], set[str], set[str]]:
    """Lower-case identifiers of the task (CamelCase split too), dotted module paths, and
    the words a noun such as "module" marks as the subject."""
    words: set[str] = set()
    modules: set[str] = set()
    subjects = {m.group(1).lower() for m in _NAMED_BY_NOUN.finditer(text)}
    for m in _WORD_RE.finditer(text):
        token = m.group(0)
        if "." in token:
            modules.add(token.replace(".", "/"))
        for part in token.split("."):
            words.add(part.lower())
            words.add(_CAMEL_RE.sub("_", part).lower())
    words = {w for w in words if len(w) >= 4 and w not in _GENERIC}
    return words, modules, subjects & words


def hinted_files(text: str, root: Path, cache: ContextCache, *, exclude: set[str],
                 limit: int = MAX_HINTED) -> list[FileRef]:
    words, modules, subjects = _task_words(text)
    if not words and not modules:
        return []
    scored: list[tuple[int, str]] = []
    for rel in cache.file_index(root):
        if rel in exclude or _SENSITIVE.search(rel):
            continue
        p = PurePosixPath(rel)
        stem = p.stem.lower()
        bare = stem.removeprefix("test_").removesuffix("_test")
        score = 0
        if str(p.with_suffix("")) in modules or str(p.parent) in modules:
            score += 4
        if stem in words:
            score += 4 if stem in subjects else 3
        elif bare != stem and bare in words:
            score += 1
        if score:
            score += sum(1 for part in p.parts[:-1] if part.lower() in words)
            scored.append((score, rel))
    scored.sort(key=lambda s: (-s[0], len(s[1]), s[1]))
    return [FileRef(rel, "hinted") for _, rel in scored[:limit]]


def environment_summary(root: Path, cache: ContextCache) -> str:
    def compute() -> str:
        lines = [f"- project folder: {root}",
                 f"- platform: {platform.system()} {platform.machine()}, "
                 f"Python {platform.python_version()} on this machine"]
        branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
        if branch:
            head = _git(root, "rev-parse", "--short", "HEAD") or "no commits"
            dirty = _git(root, "status", "--porcelain")
            changed = len(dirty.splitlines()) if dirty else 0
            lines.append(f"- git: branch {branch} at {head}, {changed} changed file(s)")
        lines += _check_commands(root)
        return "\n".join(lines)

    value = cache.timed("environment", root, compute)
    assert isinstance(value, str)
    return value


def _check_commands(root: Path) -> list[str]:
    """How this project checks its work, so an agent runs the same commands the gates do."""
    from ..gates.detect import detect_commands

    return [f"- {d.name}: `{' '.join(d.spec.command)}`" for d in detect_commands(root)
            if d.tier == 1]


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, timeout=10,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.decode("utf-8", "replace").strip()
