"""SQL repositories of the policy's shared state: leases, breakers, claims, trust."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .hostid import host_id
from .repos import BreakerRow, Census, LeaseRow, TrustRow

if TYPE_CHECKING:
    from ._sql import Executor, SqlBackend

__all__ = ["SqlBreakers", "SqlClaims", "SqlLeases", "SqlTrust"]


class SqlLeases:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def purge(self, now_us: int, *, spawns_before_us: int,
              owner_gone: Callable[[int], bool] | None) -> None:
        with self._s.atomic() as conn:
            conn.execute("DELETE FROM leases WHERE expires_us <= ?", (now_us,))
            conn.execute("DELETE FROM spawns WHERE ts_us <= ?", (spawns_before_us,))
            if owner_gone is not None:
                _drop_orphans(conn, conn.execute(_OWNED, (host_id(), host_id())), owner_gone)

    def census(self, session_id: str, since_us: int, *, owner_gone: Callable[[int], bool],
               limit_keys: Sequence[str] = ()) -> Census:
        keys = tuple(limit_keys)
        sql = _CENSUS + "".join(", (SELECT value FROM kv WHERE key = ?)" for _ in keys)
        args = (host_id(), host_id(), session_id, session_id, since_us, session_id,
                since_us, since_us, since_us, *keys)
        with self._s.atomic() as conn:
            # Both sent before either is read: one round trip to a team store.
            owned = conn.execute(_OWNED, (host_id(), host_id()))
            counted = conn.execute(sql, args)
            if _drop_orphans(conn, owned, owner_gone):
                counted.fetchall()
                counted = conn.execute(sql, args)
            row = counted.fetchone()
        return Census(int(row[0]), int(row[1]), int(row[2]), int(row[3]),
                      None if row[4] is None else int(row[4]), int(row[5]),
                      None if row[6] is None else int(row[6]),
                      tuple(None if v is None else str(v) for v in row[7:]))

    def count(self, *, session_id: str | None = None, host: str | None = None) -> int:
        sql, args = "SELECT count(*) FROM leases WHERE 1 = 1", list[object]()
        if session_id is not None:
            sql, args = sql + " AND session_id = ?", [*args, session_id]
        if host is not None:
            sql, args = sql + " AND coalesce(host, ?) = ?", [*args, host_id(), host]
        return int(self._s.query(sql, tuple(args))[0][0])

    def put(self, lease_ids: Sequence[str], *, session_id: str, agent_type: str,
            owner_pid: int | None, depth: int, background: bool, now_us: int,
            expires_us: int) -> None:
        with self._s.atomic() as conn:
            for lease_id in lease_ids:
                conn.execute(
                    "INSERT INTO leases (id, session_id, agent_id, agent_type, owner_pid, "
                    "depth, background, acquired_us, expires_us, host) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                    "session_id = excluded.session_id, agent_id = excluded.agent_id, "
                    "agent_type = excluded.agent_type, owner_pid = excluded.owner_pid, "
                    "depth = excluded.depth, background = excluded.background, "
                    "acquired_us = excluded.acquired_us, expires_us = excluded.expires_us, "
                    "host = excluded.host",
                    (lease_id, session_id, None, agent_type, owner_pid, depth,
                     int(background), now_us, expires_us, host_id()))
                conn.execute("INSERT INTO spawns (ts_us, session_id) VALUES (?, ?)",
                             (now_us, session_id))

    def recent_spawns(self, session_id: str | None, since_us: int) -> tuple[int, int | None]:
        if session_id is None:
            row = self._s.query("SELECT count(*), min(ts_us) FROM spawns WHERE ts_us > ?",
                                (since_us,))[0]
        else:
            row = self._s.query("SELECT count(*), min(ts_us) FROM spawns WHERE session_id = ? "
                                "AND ts_us > ?", (session_id, since_us))[0]
        return int(row[0]), (None if row[1] is None else int(row[1]))

    def exists(self, lease_id: str) -> bool:
        return bool(self._s.query("SELECT 1 FROM leases WHERE id = ?", (lease_id,)))

    def _change(self, sql: str, args: tuple[object, ...]) -> int:
        with self._s.atomic() as conn:
            return int(conn.execute(sql, args).rowcount)

    def delete(self, lease_id: str) -> bool:
        return self._change("DELETE FROM leases WHERE id = ?", (lease_id,)) > 0

    def delete_agent(self, agent_id: str) -> bool:
        return self._change("DELETE FROM leases WHERE agent_id = ?", (agent_id,)) > 0

    def delete_session(self, session_id: str) -> int:
        return self._change("DELETE FROM leases WHERE session_id = ?", (session_id,))

    def delete_host(self, host: str) -> int:
        return self._change("DELETE FROM leases WHERE coalesce(host, ?) = ?",
                            (host_id(), host))

    def bind(self, lease_id: str, agent_id: str) -> bool:
        return self._change("UPDATE leases SET agent_id = ? WHERE id = ?",
                            (agent_id, lease_id)) > 0

    def bind_unnamed(self, session_id: str, agent_type: str, agent_id: str) -> bool:
        return self._change(
            "UPDATE leases SET agent_id = ? WHERE id = (SELECT id FROM leases WHERE "
            "session_id = ? AND agent_type = ? AND agent_id IS NULL AND id LIKE '%#%' "
            "ORDER BY acquired_us, id LIMIT 1)", (agent_id, session_id, agent_type)) > 0

    def rename_group(self, old_prefix: str, new_prefix: str) -> int:
        return self._change(
            "UPDATE leases SET id = ? || substr(id, ?) WHERE substr(id, 1, ?) = ?",
            (new_prefix, len(old_prefix) + 1, len(old_prefix) + 1, old_prefix + "#"))

    def delete_group(self, prefix: str) -> int:
        return self._change("DELETE FROM leases WHERE substr(id, 1, ?) = ?",
                            (len(prefix) + 1, prefix + "#"))

    def ids(self, session_id: str, prefix: str) -> list[str]:
        rows = self._s.query("SELECT id FROM leases WHERE session_id = ? AND "
                             "substr(id, 1, ?) = ?", (session_id, len(prefix), prefix))
        return [str(r[0]) for r in rows]

    def bound(self, session_id: str) -> list[tuple[str, str]]:
        rows = self._s.query("SELECT id, agent_id FROM leases WHERE session_id = ? AND "
                             "agent_id IS NOT NULL AND id NOT LIKE '%#%'", (session_id,))
        return [(str(r[0]), str(r[1])) for r in rows]

    def newest_depth(self, session_id: str, agent_type: str) -> int | None:
        rows = self._s.query("SELECT depth FROM leases WHERE session_id = ? AND "
                             "agent_type = ? ORDER BY acquired_us DESC LIMIT 1",
                             (session_id, agent_type))
        return int(rows[0][0]) if rows else None

    def rows(self) -> list[LeaseRow]:
        # A database opened read-only before its migration to hosts: all rows are local.
        host = "coalesce(host, ?)" if self._s.dialect.name != "sqlite" or \
            self._s.query(self._s.dialect.has_column, ("leases", "host")) else "?"
        rows = self._s.query("SELECT id, session_id, agent_type, agent_id, depth, acquired_us, "
                             f"background, {host} FROM leases ORDER BY acquired_us",
                             (host_id(),))
        return [LeaseRow(str(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), int(r[5]),
                         bool(r[6]), str(r[7])) for r in rows]

    def agent_depth(self, agent_id: str) -> int | None:
        rows = self._s.query("SELECT depth FROM agents WHERE agent_id = ?", (agent_id,))
        return int(rows[0][0]) if rows else None

    def agent_stopped(self, agent_id: str) -> bool | None:
        rows = self._s.query("SELECT stopped_us FROM agents WHERE agent_id = ?", (agent_id,))
        return None if not rows else rows[0][0] is not None

    def agent_started(self, agent_id: str, session_id: str, agent_type: str, depth: int,
                      now_us: int) -> None:
        # A resumed agent (SendMessage) starts again under its old id: running anew.
        self._change("INSERT INTO agents (agent_id, session_id, agent_type, depth, started_us, "
                     "stopped_us) VALUES (?,?,?,?,?,NULL) ON CONFLICT (agent_id) "
                     "DO UPDATE SET stopped_us = NULL",
                     (agent_id, session_id, agent_type, depth, now_us))

    def agent_ended(self, agent_id: str, now_us: int) -> None:
        self._change("INSERT INTO agents (agent_id, session_id, agent_type, depth, started_us, "
                     "stopped_us) VALUES (?, '', '', 1, ?, ?) ON CONFLICT (agent_id) "
                     "DO UPDATE SET stopped_us = excluded.stopped_us",
                     (agent_id, now_us, now_us))


# A pid names a process on the host that took the lease, nowhere else.
_OWNED = ("SELECT id, owner_pid FROM leases WHERE owner_pid IS NOT NULL AND "
          "coalesce(host, ?) = ?")
_CENSUS = ("SELECT (SELECT count(*) FROM leases WHERE coalesce(host, ?) = ?), "
           "(SELECT count(*) FROM leases WHERE session_id = ?), "
           "(SELECT count(*) FROM leases), "
           "(SELECT count(*) FROM spawns WHERE session_id = ? AND ts_us > ?), "
           "(SELECT min(ts_us) FROM spawns WHERE session_id = ? AND ts_us > ?), "
           "(SELECT count(*) FROM spawns WHERE ts_us > ?), "
           "(SELECT min(ts_us) FROM spawns WHERE ts_us > ?)")


def _drop_orphans(conn: Executor, owned: Any, owner_gone: Callable[[int], bool]) -> bool:
    dead = [lease_id for lease_id, pid in owned.fetchall() if owner_gone(pid)]
    for lease_id in dead:
        conn.execute("DELETE FROM leases WHERE id = ?", (lease_id,))
    return bool(dead)


class SqlBreakers:
    _COLS = "agent_type, state, opened_us, failures, trial_owner, trial_expires_us"

    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def get(self, agent_type: str) -> BreakerRow | None:
        rows = self._s.query(f"SELECT {self._COLS} FROM breakers WHERE agent_type = ?",
                             (agent_type,))
        return _breaker(rows[0]) if rows else None

    def _change(self, sql: str, args: tuple[object, ...]) -> int:
        with self._s.atomic() as conn:
            return int(conn.execute(sql, args).rowcount)

    def start_trial(self, agent_type: str, owner: str, expires_us: int) -> None:
        self._change("UPDATE breakers SET state = 'half_open', trial_owner = ?, "
                     "trial_expires_us = ? WHERE agent_type = ?", (owner, expires_us, agent_type))

    def hand_trial(self, agent_type: str, owner: str, new_owner: str, expires_us: int) -> bool:
        return self._change(
            "UPDATE breakers SET trial_owner = ?, trial_expires_us = ? WHERE agent_type = ? "
            "AND state = 'half_open' AND trial_owner = ?",
            (new_owner, expires_us, agent_type, owner)) == 1

    def release_trial(self, agent_type: str, owner: str) -> bool:
        return self._change(
            "UPDATE breakers SET state = 'open', trial_owner = NULL, trial_expires_us = NULL "
            "WHERE agent_type = ? AND state = 'half_open' AND trial_owner = ?",
            (agent_type, owner)) == 1

    def put(self, agent_type: str, state: str, opened_us: int | None,
            failures: Sequence[float]) -> None:
        # No count read back: a team store need not wait for this statement alone.
        with self._s.atomic() as conn:
            conn.execute(
                "INSERT INTO breakers (agent_type, state, opened_us, failures) "
                "VALUES (?,?,?,?) ON CONFLICT (agent_type) DO UPDATE SET state = "
                "excluded.state, failures = excluded.failures, opened_us = "
                "coalesce(excluded.opened_us, breakers.opened_us), "
                "trial_owner = NULL, trial_expires_us = NULL",
                (agent_type, state, opened_us, json.dumps(list(failures))))

    def rows(self) -> list[BreakerRow]:
        return [_breaker(r) for r in self._s.query(
            f"SELECT {self._COLS} FROM breakers ORDER BY agent_type")]


def _breaker(row: Sequence[object]) -> BreakerRow:
    try:
        failures = tuple(float(t) for t in json.loads(str(row[3])))
    except (TypeError, ValueError):
        failures = ()
    opened, expires = row[2], row[5]
    return BreakerRow(str(row[0]), str(row[1]), opened if isinstance(opened, int) else None,
                      failures, None if row[4] is None else str(row[4]),
                      expires if isinstance(expires, int) else None)


class SqlClaims:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def claim(self, key: str, owner: str, now_us: int, *,
              prune_before_us: int | None = None) -> bool:
        with self._s.atomic() as conn:
            cur = conn.execute("INSERT INTO claims (key, owner, ts_us, host) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (key) DO NOTHING", (key, owner, now_us, host_id()))
            if prune_before_us is not None:
                conn.execute("DELETE FROM claims WHERE ts_us < ?", (prune_before_us,))
            return bool(cur.rowcount == 1)

    def get(self, key: str) -> tuple[str, str | None] | None:
        rows = self._s.query("SELECT owner, decision FROM claims WHERE key = ?", (key,))
        if not rows:
            return None
        raw = rows[0][1]
        return str(rows[0][0]), (raw if isinstance(raw, str) else None)

    def record(self, key: str, owner: str, decision: str) -> None:
        with self._s.atomic() as conn:
            conn.execute("UPDATE claims SET decision = ? WHERE key = ? AND owner = ?",
                         (decision, key, owner))


class SqlTrust:
    def __init__(self, store: SqlBackend) -> None:
        self._s = store

    def trusted(self, project: str) -> TrustRow | None:
        rows = self._s.query("SELECT config, digest, origin, updated_us FROM policy_trust "
                             "WHERE project = ?", (project,))
        return TrustRow(*rows[0]) if rows else None

    def set_trusted(self, project: str, config: str, digest: str, origin: str,
                    now_us: int) -> None:
        with self._s.atomic() as conn:
            conn.execute("INSERT INTO policy_trust (project, config, digest, origin, "
                         "updated_us) VALUES (?, ?, ?, ?, ?) "
                         "ON CONFLICT (project) DO UPDATE SET config = excluded.config, "
                         "digest = excluded.digest, origin = excluded.origin, "
                         "updated_us = excluded.updated_us",
                         (project, config, digest, origin, now_us))

    def pin(self, session_id: str) -> str | None:
        rows = self._s.query("SELECT config FROM policy_pins WHERE session_id = ?",
                             (session_id,))
        return str(rows[0][0]) if rows else None

    def latest_pin(self, project: str) -> tuple[str, str, str] | None:
        rows = self._s.query("SELECT session_id, config, digest FROM policy_pins "
                             "WHERE project = ? ORDER BY pinned_us DESC, "
                             f"{self._s.dialect.insertion_order} DESC LIMIT 1", (project,))
        return (str(rows[0][0]), str(rows[0][1]), str(rows[0][2])) if rows else None

    def add_pin(self, session_id: str, project: str, config: str, digest: str,
                now_us: int) -> None:
        with self._s.atomic() as conn:
            conn.execute("INSERT INTO policy_pins (session_id, project, config, digest, "
                         "pinned_us) VALUES (?, ?, ?, ?, ?)",
                         (session_id, project, config, digest, now_us))

    def set_pin(self, session_id: str, config: str, digest: str) -> None:
        with self._s.atomic() as conn:
            conn.execute("UPDATE policy_pins SET config = ?, digest = ? WHERE session_id = ?",
                         (config, digest, session_id))

    def first_time(self, session_id: str, change: str, now_us: int) -> bool:
        with self._s.atomic() as conn:
            cur = conn.execute("INSERT INTO policy_changes (session_id, change, ts_us) "
                               "VALUES (?, ?, ?) ON CONFLICT (session_id, change) DO NOTHING",
                               (session_id, change, now_us))
            return bool(cur.rowcount == 1)
