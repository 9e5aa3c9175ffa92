"""What the main agent's own tools read back from its subagents' transcripts.

The output gate keeps a credential out of a subagent's answer, but Claude Code also
writes every subagent's whole conversation to disk: `<projects>/<session>/subagents/
agent-<id>.jsonl`, and a background agent's `output_file` (`$CLAUDE_CODE_TMPDIR/
claude-<uid>/<project>/<session>/tasks/<id>.output`) is a link to it. The main agent may
read those with any tool and any spelling (Read, Grep, `cat`, `tail`, a symlink, a glob,
`python3 -c`), so the check is on content, not on paths: after each of the main agent's
tool calls, every credential found in this session's subagent transcripts is redacted
from the result (PostToolUse `updatedToolOutput`, in the tool's own output shape).

Credentials are found in each transcript as written (JSON-escaped) and in its decoded
string values, so a reader that decodes the JSON (`jq -r`) is covered too. Files are
scanned once per size and modification time; a session that started no subagent costs
one `stat`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TranscriptSecrets", "redact_known", "subagent_transcripts"]

MAX_TRANSCRIPT = 64 << 20
_MIN_SECRET = 8


def subagent_transcripts(transcript_path: str) -> list[Path]:
    """The session's subagent transcripts, from the main transcript's path."""
    if not transcript_path.endswith(".jsonl"):
        return []
    folder = Path(transcript_path[: -len(".jsonl")]) / "subagents"
    try:
        return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []
    except OSError:
        return []


class TranscriptSecrets:
    """Credentials found in transcript files, cached per (size, mtime) of each file."""

    def __init__(self) -> None:
        self._cache: dict[Path, tuple[tuple[int, int], dict[str, str]]] = {}
        self._lock = threading.Lock()

    def secrets(self, files: list[Path]) -> dict[str, str]:
        """secret value -> rule id, over all `files`."""
        found: dict[str, str] = {}
        for path in files:
            found.update(self._file(path))
        return found

    def _file(self, path: Path) -> dict[str, str]:
        try:
            st = path.stat()
        except OSError:
            return {}
        stamp = (st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            with path.open("rb") as fh:
                text = fh.read(MAX_TRANSCRIPT).decode("utf-8", "replace")
        except OSError:
            return {}
        found = _scan_all(text)
        with self._lock:
            self._cache[path] = (stamp, found)
        return found


def _scan_all(text: str) -> dict[str, str]:
    from ..detect.secrets import scan_text

    found: dict[str, str] = {}
    # No allowlist: a pragma beside a secret in a transcript is the model's own writing.
    for chunk in (text, "\n".join(_decoded_strings(text))):
        for f in scan_text(chunk):
            value = chunk[f.start:f.end]
            if len(value) >= _MIN_SECRET:
                found.setdefault(value, f.rule_id)
    return found


def _decoded_strings(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        try:
            _strings(json.loads(line), out)
        except ValueError:
            continue
    return out


def _strings(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > 50:
        return
    if isinstance(value, str):
        if len(value) >= _MIN_SECRET:
            out.append(value)
    elif isinstance(value, Mapping):
        for v in value.values():
            _strings(v, out, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _strings(v, out, depth + 1)


def redact_known(value: Any, secrets: Mapping[str, str]) -> tuple[Any, list[str]]:
    """`value` with every occurrence of a known secret replaced, in place of its shape;
    the rule ids replaced."""
    rules: list[str] = []
    # Longest first: a secret that contains another is replaced whole.
    ordered = sorted(secrets.items(), key=lambda kv: -len(kv[0]))

    def walk(v: Any, depth: int) -> Any:
        if isinstance(v, str):
            for secret, rule in ordered:
                if secret in v:
                    v = v.replace(secret, f"[REDACTED:{rule}]")
                    rules.append(rule)
            return v
        if depth > 50:
            return v
        if isinstance(v, Mapping):
            return {k: walk(x, depth + 1) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x, depth + 1) for x in v]
        return v

    return walk(value, 0), sorted(set(rules))
