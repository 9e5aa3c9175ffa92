"""Witnesses of the audit chain: its head, recorded outside the database.

The chain in SQLite proves that its rows agree with each other, not that they are the rows
that were written: a process that can write the database can delete rows and recompute
every hash, or write a fresh chain. A witness keeps (seq, head hash, time) checkpoints
somewhere else, so a database rewritten on its own no longer matches, and a database that
went missing is noticed instead of silently starting over.

`FileWitness` is an append-only file beside the database, one HMAC-SHA256-signed JSON line
per write transaction, the key in a 0600 file. Against a process running as the same user
the key is no secret: it stops edits made without reading it, not a deliberate forger (see
docs/policy.md). Other witnesses (a team store) implement `Witness` too.

A `gap` checkpoint starts a new epoch: the database recorded, in an `audit.gap` row at that
seq, that what was witnessed before could not be found, and every earlier line belongs to
the history that was lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import NamedTuple, Protocol

from .canonical import canonical_json
from .errors import OrchestratorError

__all__ = ["Checkpoint", "FileWitness", "Witness", "WitnessError", "WitnessLine",
           "witness_for"]

_TAIL_BYTES = 4096
_TAIL_LINES = 16
_KEY_NAME = "witness.key"


class WitnessError(OrchestratorError):
    """A witness cannot be read or does not verify."""


class Checkpoint(NamedTuple):
    seq: int
    head: str
    ts_us: int
    gap: bool = False


class WitnessLine(NamedTuple):
    line: int
    checkpoint: Checkpoint | None  # None when the line is malformed or not signed
    problem: str | None = None


class Witness(Protocol):
    @property
    def location(self) -> str: ...

    def enrolled(self) -> bool:
        """True once this witness has been used: its absence then means it was lost."""
        ...

    def present(self) -> bool:
        """Whether it holds any checkpoint."""
        ...

    def hold(self) -> AbstractContextManager[None]:
        """Serialise a check-then-record against other processes' appends."""
        ...

    def append(self, cp: Checkpoint) -> None: ...

    def latest(self) -> Checkpoint | None:
        """The highest checkpoint of the current epoch; None when nothing is witnessed.
        Raises `WitnessError` when the newest entries are damaged or not signed."""
        ...

    def lines(self) -> list[WitnessLine]: ...


def witness_for(db_path: str | Path) -> FileWitness:
    """`state.db` is witnessed by `state.witness`, signed with `witness.key`, in its folder.
    Not `state.db.witness`: `rm state.db*` is how people reset the database."""
    path = Path(db_path)
    return FileWitness(path.with_name(path.stem + ".witness"), path.with_name(_KEY_NAME))


class FileWitness:
    def __init__(self, path: Path, key_path: Path) -> None:
        self.path = path
        self.key_path = key_path
        self._held = threading.local()

    @property
    def location(self) -> str:
        return str(self.path)

    def enrolled(self) -> bool:
        return self.key_path.exists()

    def present(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except OSError:
            return False

    # -- the key -----------------------------------------------------------------------
    def _key(self, *, create: bool) -> bytes:
        try:
            text = self.key_path.read_text("ascii").strip()
        except FileNotFoundError:
            if not create:
                raise WitnessError(f"witness key {self.key_path} is missing: the witness "
                                   "cannot be checked") from None
            return self._new_key()
        except (OSError, UnicodeDecodeError) as exc:
            raise WitnessError(f"cannot read witness key {self.key_path}: {exc}") from exc
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise WitnessError(f"witness key {self.key_path} is damaged")
        return key

    def _new_key(self) -> bytes:
        key = os.urandom(32)
        try:
            fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         0o600)
        except FileExistsError:
            return self._key(create=False)  # another process made it first
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
        return key

    # -- lines -------------------------------------------------------------------------
    @staticmethod
    def _mac(key: bytes, cp: Checkpoint) -> str:
        body = canonical_json({"v": 1, "seq": cp.seq, "head": cp.head, "ts_us": cp.ts_us,
                               "gap": cp.gap})
        return hmac.new(key, body, "sha256").hexdigest()

    def _encode(self, key: bytes, cp: Checkpoint) -> bytes:
        entry = {"seq": cp.seq, "head": cp.head, "ts_us": cp.ts_us, "gap": cp.gap,
                 "mac": self._mac(key, cp)}
        return json.dumps(entry, separators=(",", ":")).encode("ascii") + b"\n"

    def _decode(self, key: bytes, number: int, raw: bytes) -> WitnessLine:
        try:
            entry = json.loads(raw)
            cp = Checkpoint(entry["seq"], entry["head"], entry["ts_us"], entry["gap"])
            mac = entry["mac"]
            valid = (type(cp.seq) is int and cp.seq >= 1 and isinstance(cp.head, str)
                     and type(cp.ts_us) is int and type(cp.gap) is bool
                     and isinstance(mac, str))
        except (ValueError, TypeError, KeyError):
            valid = False
        if not valid:
            return WitnessLine(number, None, f"witness line {number} is malformed")
        if not hmac.compare_digest(mac, self._mac(key, cp)):
            return WitnessLine(number, None,
                               f"witness line {number} is not signed by {self.key_path}: "
                               "the witness was edited or its key replaced")
        return WitnessLine(number, cp)

    # -- file access -------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, *, write: bool) -> Iterator[int | None]:
        """The witness file, locked; None when it does not exist and `write` is false.
        Re-entrant in one thread, so `append` inside `hold` does not lock itself out."""
        held = getattr(self._held, "fd", None)
        if held is not None:
            yield held
            return
        flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY) | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            if write:
                raise
            yield None
            return
        except OSError as exc:
            raise WitnessError(f"cannot open witness {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._locked(write=True) as fd:
            if getattr(self._held, "fd", None) is not None:
                yield
                return
            self._held.fd = fd
            try:
                yield
            finally:
                self._held.fd = None

    def append(self, cp: Checkpoint) -> None:
        key = self._key(create=True)
        data = self._encode(key, cp)
        with self._locked(write=True) as fd:
            assert fd is not None
            size = os.fstat(fd).st_size
            # A torn last line (power loss) must not swallow this one: it stays a bad line.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            os.write(fd, data)

    def _read(self, *, tail: bool) -> tuple[bytes, bool]:
        with self._locked(write=False) as fd:
            if fd is None:
                return b"", True
            size = os.fstat(fd).st_size
            start = max(0, size - _TAIL_BYTES) if tail else 0
            chunks = []
            while start < size:
                chunk = os.pread(fd, min(1 << 20, size - start), start)
                if not chunk:
                    break
                chunks.append(chunk)
                start += len(chunk)
            return b"".join(chunks), size <= _TAIL_BYTES or not tail

    def lines(self) -> list[WitnessLine]:
        data, _ = self._read(tail=False)
        if not data:
            return []
        key = self._key(create=False)
        raw = data.split(b"\n")
        out = [self._decode(key, n, line) for n, line in enumerate(raw[:-1], 1)]
        if raw[-1]:
            out.append(WitnessLine(len(raw), None, f"witness line {len(raw)} is cut short: "
                                   "the witness was truncated"))
        return out

    def latest(self) -> Checkpoint | None:
        data, whole = self._read(tail=True)
        if not data:
            return None
        if not data.endswith(b"\n"):
            raise WitnessError(f"witness {self.path} ends in a cut-short line: truncated")
        raw = data.split(b"\n")[:-1]
        if not whole:
            raw = raw[1:]  # the first line of a tail read may be partial
        key = self._key(create=False)
        decoded = [self._decode(key, 0, line) for line in raw[-_TAIL_LINES:]]
        current: list[Checkpoint] = []
        for entry in decoded:
            if entry.checkpoint is None:
                raise WitnessError(f"the newest entries of witness {self.path} do not "
                                   f"verify: {entry.problem.split(': ', 1)[-1]}"
                                   if entry.problem and ": " in entry.problem else
                                   f"the newest entries of witness {self.path} are malformed")
            if entry.checkpoint.gap:
                current = []
            current.append(entry.checkpoint)
        return max(current, key=lambda cp: cp.seq) if current else None
