"""What the SQL repositories need of a backend, and the few places the dialects differ.

The repositories (`_sql_policy`, `_sql_state`) are written once, in SQL both SQLite and
PostgreSQL accept, with `?` placeholders; a backend hands them an executor inside its
`transaction()` and answers `query()`. Where the dialects part (JSON fields, catalog
lookups, insertion order), the backend's `Dialect` says how.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol

__all__ = ["POSTGRES", "SQLITE", "Dialect", "Executor", "SqlBackend"]


class Executor(Protocol):
    def execute(self, sql: str, args: Sequence[Any] = ..., /) -> Any: ...


class Dialect(NamedTuple):
    name: str
    json_text: str  # an audit data field as text; `?` takes the field's path
    has_table: str  # one row when the table named by `?` exists
    insertion_order: str  # a column that orders rows as they were inserted
    has_column: str  # one row when table `?` has column `?`

    def json_path(self, field: str) -> str:
        clean = field.replace('"', "")
        return f'$."{clean}"' if self.name == "sqlite" else clean


SQLITE = Dialect("sqlite", "json_extract(data, ?)",
                 "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", "rowid",
                 "SELECT 1 FROM pragma_table_info(?) WHERE name = ?")
POSTGRES = Dialect("postgresql", "(data::jsonb ->> ?)",
                   "SELECT 1 FROM information_schema.tables WHERE table_schema = "
                   "current_schema() AND table_name = ?", "ins",
                   "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                   "current_schema() AND table_name = ? AND column_name = ?")


class SqlBackend(Protocol):
    @property
    def dialect(self) -> Dialect: ...

    def transaction(self) -> AbstractContextManager[Any]: ...

    def atomic(self) -> AbstractContextManager[Any]:
        """A repository method's own unit: a transaction when none is open, else part of
        the caller's (no savepoint: a savepoint costs two round trips to a team store, and
        only a caller's `transaction()` promises to undo its part alone)."""
        ...

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...
