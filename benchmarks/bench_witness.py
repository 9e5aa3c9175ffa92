"""What witnessing the audit chain costs: per append, and per store open on the hook path.

    .venv/bin/python benchmarks/bench_witness.py

Compares the same appends and opens with the file witness and with a witness that does
nothing. An append with the witness pays one signed line (open, lock, write, close) after
its commit; an open pays one tail read of the witness and two indexed queries.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _common import summary_ms  # noqa: E402

from smart_orchestrator.audit import AuditLog  # noqa: E402
from smart_orchestrator.store import SqliteStore  # noqa: E402
from smart_orchestrator.witness import Checkpoint, WitnessLine  # noqa: E402

N = 2000


class NoWitness:
    location = "none"

    def enrolled(self) -> bool:
        return False

    def present(self) -> bool:
        return True

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield

    def append(self, cp: Checkpoint) -> None:
        pass

    def latest(self) -> Checkpoint | None:
        return None

    def lines(self) -> list[WitnessLine]:
        return []


def _appends(path: Path, witnessed: bool) -> list[float]:
    store = SqliteStore(path, witness=None if witnessed else NoWitness())
    log = AuditLog(store)
    samples = []
    for i in range(N):
        t0 = time.perf_counter()
        log.record("tool.use", tool="Bash", flags=["network"], i=i)
        samples.append(time.perf_counter() - t0)
    store.close()
    return samples


def _opens(path: Path, witnessed: bool) -> list[float]:
    samples = []
    for _ in range(300):
        t0 = time.perf_counter()
        SqliteStore(path, witness=None if witnessed else NoWitness()).close()
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for witnessed in (False, True):
            where = Path(tmp) / ("with" if witnessed else "without")
            where.mkdir()
            label = "file witness" if witnessed else "no witness  "
            print(f"append, {label}: {summary_ms(_appends(where / 'state.db', witnessed))}")
            print(f"open,   {label}: {summary_ms(_opens(where / 'state.db', witnessed))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
