"""The store contract, on every backend: SQLite always, PostgreSQL when one is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_orchestrator.store.conformance import CHECKS, run_store_conformance
from tests.pg import fresh_schema_dsn

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture
def new_location(request: pytest.FixtureRequest, tmp_path: Path,
                 monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    # The local witness of a team store lives in the data folder: a fresh one per test.
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("SMART_ORCHESTRATOR_HOST_ID", raising=False)
    if request.param == "sqlite":
        return lambda name: str(tmp_path / name / "state.db")
    return lambda name: fresh_schema_dsn(name)


@pytest.mark.parametrize("new_location", BACKENDS, indirect=True)
@pytest.mark.parametrize("check", sorted(CHECKS))
def test_backend_passes_conformance_check(check: str, new_location) -> None:  # type: ignore[no-untyped-def]
    CHECKS[check](new_location(check))


def test_run_store_conformance_runs_every_check(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    seen: list[str] = []

    def location(name: str) -> str:
        seen.append(name)
        return str(tmp_path / name / "state.db")

    run_store_conformance(location)
    assert seen == list(CHECKS)
