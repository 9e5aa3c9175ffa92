"""SQL repository of the token and dollar ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .repos import LedgerRow, LedgerUsage, RateGateRow

if TYPE_CHECKING:
    from ._sql import SqlBackend

__all__ = ["SqlLedger", "SqlRateGate"]

_COLUMNS = ("id, session_id, project, host, agent_id, agent_type, kind, model, state, "
            "reserved_usd, reserved_tokens, input_tokens, output_tokens, cache_read_tokens, "
            "cache_write_tokens, cost_usd, priced, source, run_id, task_id, created_us, "
            "settled_us")
# What a row counts against caps: its estimate until its real usage is known.
_CHARGED = "CASE WHEN state = 'reserved' THEN reserved_usd ELSE cost_usd END"


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _row(values: Any) -> LedgerRow:
    v = list(values)
    for i in (9, 15):
        v[i] = float(v[i])
    for i in (10, 11, 12, 13, 14, 20):
        v[i] = int(v[i])
    return LedgerRow(*v)


class SqlLedger:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def reserve(self, row: LedgerRow) -> bool:
        with self._s.transaction() as conn:
            cur = conn.execute(
                f"INSERT INTO ledger ({_COLUMNS}) VALUES "
                f"({','.join('?' * len(LedgerRow._fields))}) ON CONFLICT (id) DO NOTHING",
                tuple(row))
            return bool(cur.rowcount)

    def bind(self, entry_id: str, agent_id: str) -> bool:
        with self._s.transaction() as conn:
            cur = conn.execute("UPDATE ledger SET agent_id = ? WHERE id = ? AND "
                               "agent_id IS NULL", (agent_id, entry_id))
            return bool(cur.rowcount)

    def open_for_agent(self, agent_id: str) -> str | None:
        rows = self._s.query("SELECT id FROM ledger WHERE agent_id = ? AND state = 'reserved' "
                             "ORDER BY created_us LIMIT 1", (agent_id,))
        return str(rows[0][0]) if rows else None

    def open_ids(self, session_id: str) -> list[str]:
        rows = self._s.query("SELECT id FROM ledger WHERE session_id = ? AND "
                             "state = 'reserved' ORDER BY created_us", (session_id,))
        return [str(r[0]) for r in rows]

    def settle(self, entry_id: str, usage: LedgerUsage, now_us: int) -> bool:
        with self._s.transaction() as conn:
            cur = conn.execute(
                "UPDATE ledger SET state = 'settled', input_tokens = ?, output_tokens = ?, "
                "cache_read_tokens = ?, cache_write_tokens = ?, cost_usd = ?, model = ?, "
                "priced = ?, settled_us = ? WHERE id = ? AND state = 'reserved'",
                (usage.input_tokens, usage.output_tokens, usage.cache_read_tokens,
                 usage.cache_write_tokens, usage.cost_usd, usage.model, usage.priced, now_us,
                 entry_id))
            return bool(cur.rowcount)

    def abandon(self, entry_id: str, now_us: int) -> bool:
        with self._s.transaction() as conn:
            cur = conn.execute(
                "UPDATE ledger SET state = 'abandoned', cost_usd = reserved_usd, "
                "settled_us = ? WHERE id = ? AND state = 'reserved'", (now_us, entry_id))
            return bool(cur.rowcount)

    def get(self, entry_id: str) -> LedgerRow | None:
        rows = self._s.query(f"SELECT {_COLUMNS} FROM ledger WHERE id = ?", (entry_id,))
        return _row(rows[0]) if rows else None

    def charged(self, *, since_us: int | None = None, session_id: str | None = None,
                project: str | None = None, host: str | None = None) -> tuple[float, int]:
        sql, args = f"SELECT coalesce(sum({_CHARGED}), 0), count(*) FROM ledger WHERE 1 = 1", \
            list[Any]()
        for column, value in (("created_us >=", since_us), ("session_id =", session_id),
                              ("project =", project), ("host =", host)):
            if value is not None:
                sql += f" AND {column} ?"
                args.append(value)
        total, count = self._s.query(sql, tuple(args))[0]
        return float(total), int(count)

    def history(self, kind: str, *, limit: int, prefix: bool = False) -> list[LedgerRow]:
        match, arg = ("kind LIKE ? ESCAPE '\\'", _like_prefix(kind)) if prefix \
            else ("kind = ?", kind)
        rows = self._s.query(f"SELECT {_COLUMNS} FROM ledger WHERE {match} AND "
                             "state = 'settled' AND priced <> "
                             "'not started' ORDER BY settled_us DESC LIMIT ?", (arg, limit))
        return [_row(r) for r in rows]

    def rows(self, *, session_id: str | None = None, run_id: str | None = None,
             since_us: int | None = None, limit: int = 500) -> list[LedgerRow]:
        sql, args = f"SELECT {_COLUMNS} FROM ledger WHERE 1 = 1", list[Any]()
        for column, value in (("session_id =", session_id), ("run_id =", run_id),
                              ("created_us >=", since_us)):
            if value is not None:
                sql += f" AND {column} ?"
                args.append(value)
        sql += " ORDER BY created_us, id LIMIT ?"
        return [_row(r) for r in self._s.query(sql, (*args, limit))]


class SqlRateGate:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def get(self, scope: str) -> RateGateRow | None:
        rows = self._s.query("SELECT scope, until_us, status, reason, updated_us FROM "
                             "rate_gate WHERE scope = ?", (scope,))
        if not rows:
            return None
        scope, until_us, status, reason, updated_us = rows[0]
        return RateGateRow(str(scope), int(until_us), int(status), str(reason), int(updated_us))

    def close_until(self, scope: str, until_us: int, status: int, reason: str,
                    now_us: int) -> RateGateRow:
        with self._s.transaction() as conn:
            # A later deadline wins; an earlier one reported meanwhile never shortens it.
            conn.execute(
                "INSERT INTO rate_gate (scope, until_us, status, reason, updated_us) "
                "VALUES (?,?,?,?,?) ON CONFLICT (scope) DO UPDATE SET "
                "until_us = excluded.until_us, status = excluded.status, "
                "reason = excluded.reason, updated_us = excluded.updated_us "
                "WHERE excluded.until_us > rate_gate.until_us",
                (scope, until_us, status, reason, now_us))
            row = self.get(scope)
        assert row is not None
        return row
