"""The ledger contract on every backend: SQLite always, PostgreSQL when
SMART_ORCHESTRATOR_TEST_PG_DSN names one."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from smart_orchestrator.store.ledger_conformance import LEDGER_CHECKS

DSN_ENV = "SMART_ORCHESTRATOR_TEST_PG_DSN"


def _fresh_schema(dsn: str, label: str) -> str:
    import psycopg

    schema = f"l{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("check", sorted(LEDGER_CHECKS))
def test_backend_passes_ledger_check(check: str, backend: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMART_ORCHESTRATOR_DATA", str(tmp_path / "data"))
    if backend == "sqlite":
        location = str(tmp_path / "state.db")
    else:
        dsn = os.environ.get(DSN_ENV, "").strip()
        if not dsn:
            pytest.skip(f"no PostgreSQL: set {DSN_ENV}")
        location = _fresh_schema(dsn, check)
    LEDGER_CHECKS[check](location)
