"""Witnesses of the audit chain: its head, recorded outside the database.

The chain in SQLite proves that its rows agree with each other, not that they are the rows
that were written: a process that can write the database can delete rows and recompute
every hash, or write a fresh chain. A witness keeps (seq, head hash, time) checkpoints
somewhere else, so a database rewritten on its own no longer matches, and a database that
went missing is noticed instead of silently starting over.

`FileWitness` is an append-only file beside the database, one HMAC-SHA256-signed JSON line
per write transaction, the key in a 0600 file. Each signature covers the line's byte offset
too, so a line copied elsewhere in the file (an old checkpoint replayed) does not verify.
Against a process running as the same user the key is no secret: it stops edits made
without reading it, not a deliberate forger (see docs/policy.md). Other witnesses (a team
store) implement `Witness` too.

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
import stat
import tempfile
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
            with open(os.open(self.key_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC),
                      encoding="ascii") as fh:
                text = fh.read().strip()
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
        # Written aside and linked into place, so no reader ever sees a half-written key.
        fd, tmp = tempfile.mkstemp(dir=self.key_path.parent, prefix=".witness-key-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(key.hex() + "\n")
            try:
                os.link(tmp, self.key_path)
            except FileExistsError:
                return self._key(create=False)  # another process made it first
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        return key

    # -- lines -------------------------------------------------------------------------
    @staticmethod
    def _mac(key: bytes, cp: Checkpoint, at: int) -> str:
        body = canonical_json({"v": 1, "seq": cp.seq, "head": cp.head, "ts_us": cp.ts_us,
                               "gap": cp.gap, "at": at})
        return hmac.new(key, body, "sha256").hexdigest()

    def _encode(self, key: bytes, cp: Checkpoint, at: int) -> bytes:
        entry = {"seq": cp.seq, "head": cp.head, "ts_us": cp.ts_us, "gap": cp.gap,
                 "mac": self._mac(key, cp, at)}
        return json.dumps(entry, separators=(",", ":")).encode("ascii") + b"\n"

    def _decode(self, key: bytes, number: int, raw: bytes, at: int) -> WitnessLine:
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
        if not hmac.compare_digest(mac, self._mac(key, cp, at)):
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
        # No symlinks: a witness pointed at /dev/null would swallow every checkpoint.
        flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT if write else os.O_RDONLY) | \
            os.O_CLOEXEC | os.O_NOFOLLOW
        try:
            fd = os.open(self.path, flags, 0o600)
        except FileNotFoundError:
            if write:
                raise
            yield None
            return
        except OSError as exc:
            raise WitnessError(f"cannot open witness {self.path}: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise WitnessError(f"witness {self.path} is not a regular file")
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
        with self._locked(write=True) as fd:
            assert fd is not None
            # The key is made under the lock: a reader holding it that found the key but
            # no checkpoint would otherwise take a first append in flight for a deleted
            # witness.
            key = self._key(create=True)
            size = os.fstat(fd).st_size
            # A torn last line (power loss) must not swallow this one: it stays a bad line.
            torn = bool(size) and os.pread(fd, 1, size - 1) != b"\n"
            at = size + 1 if torn else size
            os.write(fd, (b"\n" if torn else b"") + self._encode(key, cp, at))

    def _read(self, *, tail: bool) -> tuple[bytes, int]:
        """The file's bytes (its last few KB when `tail`) and the offset they start at."""
        try:
            with self._locked(write=False) as fd:
                if fd is None:
                    return b"", 0
                size = os.fstat(fd).st_size
                start = first = max(0, size - _TAIL_BYTES) if tail else 0
                chunks = []
                while start < size:
                    chunk = os.pread(fd, min(1 << 20, size - start), start)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    start += len(chunk)
                return b"".join(chunks), first
        except OSError as exc:
            raise WitnessError(f"cannot read witness {self.path}: {exc.strerror}") from exc

    @staticmethod
    def _split(data: bytes, first: int) -> list[tuple[int, bytes]]:
        """Complete lines with their offsets; a partial first line of a tail is dropped."""
        out, at = [], first
        for line in data.split(b"\n")[:-1]:
            out.append((at, line))
            at += len(line) + 1
        return out[1:] if first and out else out

    def lines(self) -> list[WitnessLine]:
        data, _ = self._read(tail=False)
        if not data:
            return []
        key = self._key(create=False)
        split = self._split(data, 0)
        out = [self._decode(key, n, line, at) for n, (at, line) in enumerate(split, 1)]
        if not data.endswith(b"\n"):
            out.append(WitnessLine(len(out) + 1, None, f"witness line {len(out) + 1} is cut "
                                   "short: the witness was truncated"))
        return out

    def latest(self) -> Checkpoint | None:
        data, first = self._read(tail=True)
        if not data:
            return None
        if not data.endswith(b"\n"):
            raise WitnessError(f"witness {self.path} ends in a cut-short line: truncated")
        key = self._key(create=False)
        decoded = [self._decode(key, 0, line, at)
                   for at, line in self._split(data, first)[-_TAIL_LINES:]]
        # Newest first, back to the gap that opened the current epoch: lines before that
        # gap belong to history it recorded as lost, damaged or not.
        current: list[Checkpoint] = []
        for entry in reversed(decoded):
            if entry.checkpoint is None:
                why = ("one is not signed by its key: the witness was edited or its key "
                       "replaced" if "not signed" in (entry.problem or "") else
                       "one is malformed")
                raise WitnessError(f"the newest entries of witness {self.path} do not "
                                   f"verify: {why}")
            current.append(entry.checkpoint)
            if entry.checkpoint.gap:
                break
        return max(current, key=lambda cp: cp.seq) if current else None
