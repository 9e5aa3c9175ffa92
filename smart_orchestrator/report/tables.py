"""Short Markdown tables for people: waves, audit events and checkpoints.

What the slash commands show in a chat and the CLI prints in a terminal. Reads only.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..checkpoints import Checkpoints
from ..store.base import AuditRecord, CheckpointMeta, Store
from ..waves.snapshot import RunSummary, WaveSnapshot

__all__ = [
    "audit_table",
    "checkpoint_table",
    "checkpoint_view",
    "md_table",
    "recent_audit",
    "wave_list_table",
    "wave_view",
    "when",
]

# Fields worth a glance in an audit row, in the order they are shown.
_AUDIT_KEYS = ("decision", "event", "tool", "denied_by", "task_id", "attempt", "outcome",
               "state", "error_class", "name", "review", "approver", "passed",
               "blocking_tier", "status", "reason", "count", "run_id", "agent_type")
_MAX_CELL = 140


def when(ts_us: int | None) -> str:
    if ts_us is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts_us / 1e6))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value) or "-"
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 3] + "..."


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if not body:
        return "_none_"
    return "\n".join(["| " + " | ".join(headers) + " |",
                      "|" + "---|" * len(headers), *body])


# -- waves -----------------------------------------------------------------------------------

def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "-"


def wave_list_table(runs: Sequence[RunSummary]) -> str:
    return md_table(["run", "name", "state", "tasks", "started", "finished"],
                    [[r.run_id, r.name, r.state, _counts(r.counts), when(r.created_us),
                      when(r.finished_us)] for r in runs])


def wave_view(snap: WaveSnapshot) -> str:
    tokens = sum(t.input_tokens + t.output_tokens for t in snap.tasks)
    cost = sum(t.cost_usd for t in snap.tasks)
    lines = [f"## Wave `{snap.run_id}`" + (f" - {snap.name}" if snap.name else ""), "",
             f"**State:** {snap.state}" + (f" - {snap.reason}" if snap.reason else ""),
             f"Started {when(snap.created_us)}, finished {when(snap.finished_us)}; "
             f"{tokens} tokens, ${cost:.4f}.", ""]
    lines.append(md_table(
        ["task", "level", "state", "attempts", "reformats", "depends on", "time (s)",
         "tokens", "error"],
        [[t.id, t.level + 1, t.state, t.attempts, t.reformats, list(t.depends_on),
          t.duration_s, t.input_tokens + t.output_tokens,
          f"{t.error_class}: {t.reason}" if t.error_class else (t.reason or "-")]
         for t in snap.tasks]))
    compensated = [t for t in snap.tasks if t.compensation]
    if compensated:
        lines += ["", "**Compensations**", md_table(
            ["task", "status", "reason"],
            [[t.id, t.compensation, t.compensation_reason] for t in compensated])]
    return "\n".join(lines)


# -- audit -----------------------------------------------------------------------------------

def recent_audit(store: Store, *, limit: int, kind: str | None = None
                 ) -> list[AuditRecord]:
    """The newest `limit` events, oldest first; with `kind`, only kinds starting with it."""
    if kind is None:
        first = store.audit_head().seq - limit + 1
    else:
        found = store.audit.first_seq(kind_prefix=kind, last=limit)
        first = found if found is not None else store.audit_head().seq + 1
    return [r for r in store.iter_audit(after_seq=max(0, first - 1))
            if kind is None or r.kind.startswith(kind)][-limit:]


def _details(data: Mapping[str, Any]) -> str:
    parts = []
    for key in _AUDIT_KEYS:
        value = data.get(key)
        if value in (None, "", [], {}) or isinstance(value, Mapping):
            continue
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        parts.append(f"{key}={value}")
    return " ".join(parts) or json.dumps(dict(data), sort_keys=True)[:_MAX_CELL]


def audit_table(records: Sequence[AuditRecord]) -> str:
    return md_table(["seq", "time", "kind", "details"],
                    [[r.seq, when(r.ts_us), r.kind, _details(r.data)] for r in records])


# -- checkpoints -----------------------------------------------------------------------------

def checkpoint_table(metas: Sequence[CheckpointMeta]) -> str:
    return md_table(["name", "id", "saved", "bytes", "sha256"],
                    [[m.name, m.id, when(m.created_us), m.size, m.sha256[:12]]
                     for m in metas])


def checkpoint_view(store: Store, name: str, *, max_chars: int = 4000) -> str:
    loaded = Checkpoints(store).load(name)
    state = json.dumps(loaded.state, indent=2, sort_keys=True)
    cut = len(state) > max_chars
    lines = [f"## Checkpoint `{name}`", "", loaded.note() + ".",
             f"Saved {when(loaded.meta.created_us)}, {loaded.meta.size} bytes, "
             f"sha256 `{loaded.meta.sha256[:12]}`.", "", "```json",
             state[:max_chars] + ("\n..." if cut else ""), "```"]
    if cut:
        lines.append(f"(first {max_chars} of {len(state)} characters)")
    return "\n".join(lines)
