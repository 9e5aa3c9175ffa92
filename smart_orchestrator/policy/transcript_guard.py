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
string values, so a reader that decodes the JSON (`jq -r`) is covered too. Each file is
read once, in the lines it gained since the last look; a session that started no subagent
is answered by the shim without asking the service.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["TRANSCRIPTS", "TranscriptSecrets", "redact_known", "subagent_transcripts"]

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
    """Credentials found in transcript files. A transcript only grows, one JSON record per
    line, and no credential spans two records: each file is read from where the last look
    stopped (its last complete line), so a long transcript costs its new lines only."""

    def __init__(self) -> None:
        self._seen: dict[Path, tuple[int, int, dict[str, str]]] = {}  # inode, offset, found
        self._lock = threading.Lock()

    def secrets(self, files: list[Path]) -> dict[str, str]:
        """secret value -> rule id, over all `files`."""
        found: dict[str, str] = {}
        for path in files:
            found.update(self._file(path))
        return found

    def _file(self, path: Path) -> dict[str, str]:
        with self._lock:  # one reader per file at a time; the scan is what costs
            try:
                st = path.stat()
            except OSError:
                return {}
            inode, offset, found = self._seen.get(path, (st.st_ino, 0, {}))
            if inode != st.st_ino or st.st_size < offset:  # replaced or cut: start again
                inode, offset, found = st.st_ino, 0, {}
            if st.st_size > offset and offset < MAX_TRANSCRIPT:
                try:
                    with path.open("rb") as fh:
                        fh.seek(offset)
                        data = fh.read(MAX_TRANSCRIPT - offset)
                except OSError:
                    return found
                complete = data.rfind(b"\n") + 1
                if complete:
                    found = {**found, **_scan_all(data[:complete].decode("utf-8", "replace"))}
                    offset += complete
            self._seen[path] = (inode, offset, found)
            return found


# Shared by every engine of the process: an engine is rebuilt when a session's policy
# changes, and a transcript need not be read again for that.
TRANSCRIPTS = TranscriptSecrets()


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
