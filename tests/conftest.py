from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from smart_orchestrator.store import SqliteStore

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _dbos_shut_down_at_the_end() -> Iterator[None]:
    """DBOS is one per process and polls its database from a thread: the last wave test's
    would outlive that test's temporary folder and log errors as the interpreter exits."""
    yield
    if "dbos" in sys.modules:
        from dbos import DBOS

        DBOS.destroy()


@pytest.fixture
def db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "data" / "state.db"
    monkeypatch.setenv("SMART_ORCHESTRATOR_DB", str(path))
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(path.parent))
    return path


@pytest.fixture
def store(db_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(db_path)
    yield s
    s.close()
