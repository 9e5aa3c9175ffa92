"""A PostgreSQL for the tests: `SMART_ORCHESTRATOR_TEST_PG_DSN` (CI starts one, see
.ci/pg-start). Without it the tests that need one skip, unless
`SMART_ORCHESTRATOR_TEST_REQUIRE_PG=1`, where they fail instead."""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest

DSN_ENV = "SMART_ORCHESTRATOR_TEST_PG_DSN"


def pg_dsn() -> str:
    dsn = os.environ.get(DSN_ENV, "").strip()
    if not dsn:
        if os.environ.get("SMART_ORCHESTRATOR_TEST_REQUIRE_PG") == "1":
            pytest.fail(f"{DSN_ENV} is not set but SMART_ORCHESTRATOR_TEST_REQUIRE_PG=1")
        pytest.skip(f"no PostgreSQL: set {DSN_ENV} (e.g. from .ci/pg-start)")
    return dsn


def fresh_schema_dsn(label: str = "t") -> str:
    """A DSN whose search_path is a new, empty schema: a store of its own."""
    import psycopg

    dsn = pg_dsn()
    schema = f"{label[:20].lower()}_{uuid.uuid4().hex[:10]}"
    schema = "".join(c if c.isalnum() or c == "_" else "_" for c in schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options={quote(f'-csearch_path={schema}')}"
