"""Named JSON checkpoints with SHA-256, fallback past corrupt copies, and retention."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .canonical import canonical_json, sha256_hex
from .errors import OrchestratorError
from .store.base import CheckpointMeta, Store

__all__ = ["CheckpointError", "Checkpoints", "LoadedCheckpoint"]

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
DEFAULT_KEEP = 10


class CheckpointError(OrchestratorError):
    pass


@dataclass(frozen=True, slots=True)
class LoadedCheckpoint:
    meta: CheckpointMeta
    state: Any
    # Newer copies that failed their checksum or did not parse, newest first.
    skipped: tuple[tuple[int, str], ...] = field(default=())

    @property
    def fell_back(self) -> bool:
        return bool(self.skipped)

    def note(self) -> str:
        if not self.skipped:
            return f"loaded checkpoint {self.meta.name!r} #{self.meta.id}"
        bad = ", ".join(f"#{i} ({why})" for i, why in self.skipped)
        return (f"newest checkpoint(s) of {self.meta.name!r} corrupt: {bad}; "
                f"fell back to #{self.meta.id}")


class Checkpoints:
    def __init__(self, store: Store, *, keep: int = DEFAULT_KEEP) -> None:
        if keep < 1:
            raise CheckpointError("checkpoint retention must keep at least 1 copy")
        self._store = store
        self._keep = keep

    def save(self, name: str, state: Any, *, keep: int | None = None) -> CheckpointMeta:
        _check_name(name)
        try:
            payload = canonical_json(state)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint state is not plain JSON: {exc}") from exc
        return self._store.put_checkpoint(name, payload, sha256_hex(payload),
                                          keep=keep or self._keep)

    def load(self, name: str) -> LoadedCheckpoint:
        _check_name(name)
        skipped: list[tuple[int, str]] = []
        blobs = self._store.checkpoint_blobs(name)
        for blob in blobs:
            problem = _problem(blob.payload, blob.meta)
            if problem is None:
                return LoadedCheckpoint(blob.meta, json.loads(blob.payload), tuple(skipped))
            skipped.append((blob.meta.id, problem))
        if not blobs:
            raise CheckpointError(f"no checkpoint named {name!r}",
                                  hint="checkpoint_list shows the saved names")
        raise CheckpointError(f"every stored copy of checkpoint {name!r} is corrupt "
                              f"({len(blobs)} checked)", hint="nothing valid to restore")

    def list(self, name: str | None = None) -> list[CheckpointMeta]:
        return self._store.list_checkpoints(name)


def _check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise CheckpointError(f"invalid checkpoint name {name!r}",
                              hint="use 1-128 letters, digits, '.', '_', ':' or '-'")


def _problem(payload: bytes, meta: CheckpointMeta) -> str | None:
    if len(payload) != meta.size:
        return f"truncated: {len(payload)} of {meta.size} bytes"
    if sha256_hex(payload) != meta.sha256:
        return "checksum mismatch"
    try:
        json.loads(payload)
    except ValueError:
        return "not valid JSON"
    return None
