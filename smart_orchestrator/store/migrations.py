"""Numbered schema migrations. Append only: a shipped migration is never edited."""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "MIGRATIONS"]

# Written into the database header so a foreign SQLite file is never mistaken for ours.
APPLICATION_ID = 0x534D4F52  # "SMOR"

MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "audit chain and checkpoints", """
CREATE TABLE audit (
    seq       INTEGER PRIMARY KEY,
    ts_us     INTEGER NOT NULL,
    kind      TEXT    NOT NULL,
    data      TEXT    NOT NULL,
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL UNIQUE
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: UPDATE rejected'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: DELETE rejected'); END;
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count INTEGER NOT NULL,
    seq   INTEGER NOT NULL,
    hash  TEXT    NOT NULL
);
CREATE TABLE checkpoints (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    created_us INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    size       INTEGER NOT NULL,
    payload    BLOB    NOT NULL
);
CREATE INDEX checkpoints_by_name ON checkpoints (name, id);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""),
    (2, "policy: leases, spawns, agents, breakers, claims", """
CREATE TABLE leases (
    id          TEXT PRIMARY KEY,
    session_id  TEXT    NOT NULL,
    agent_id    TEXT,
    agent_type  TEXT    NOT NULL,
    owner_pid   INTEGER,
    depth       INTEGER NOT NULL,
    background  INTEGER NOT NULL DEFAULT 0,
    acquired_us INTEGER NOT NULL,
    expires_us  INTEGER NOT NULL
);
CREATE INDEX leases_by_agent ON leases (agent_id);
CREATE INDEX leases_by_session ON leases (session_id);
CREATE TABLE spawns (
    ts_us      INTEGER NOT NULL,
    session_id TEXT    NOT NULL
);
CREATE INDEX spawns_by_session ON spawns (session_id, ts_us);
CREATE TABLE agents (
    agent_id   TEXT PRIMARY KEY,
    session_id TEXT    NOT NULL,
    agent_type TEXT    NOT NULL,
    depth      INTEGER NOT NULL,
    started_us INTEGER NOT NULL,
    stopped_us INTEGER
);
CREATE TABLE breakers (
    agent_type TEXT PRIMARY KEY,
    state      TEXT    NOT NULL,
    opened_us  INTEGER,
    failures   TEXT    NOT NULL
);
CREATE TABLE claims (
    key   TEXT PRIMARY KEY,
    owner TEXT    NOT NULL,
    ts_us INTEGER NOT NULL
);
CREATE INDEX claims_by_ts ON claims (ts_us);
"""),
    (3, "waves and tasks", """
CREATE TABLE wave_runs (
    run_id      TEXT    PRIMARY KEY,
    name        TEXT,
    state       TEXT    NOT NULL,
    created_us  INTEGER NOT NULL,
    updated_us  INTEGER NOT NULL,
    finished_us INTEGER,
    plan        TEXT    NOT NULL,
    options     TEXT    NOT NULL,
    owner       TEXT,
    reason      TEXT,
    stop_class  TEXT,
    stats       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX wave_runs_by_created ON wave_runs (created_us);
CREATE TABLE wave_tasks (
    run_id              TEXT    NOT NULL REFERENCES wave_runs (run_id),
    task_id             TEXT    NOT NULL,
    position            INTEGER NOT NULL,
    state               TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    started_us          INTEGER,
    finished_us         INTEGER,
    input_tokens        INTEGER NOT NULL DEFAULT 0,
    output_tokens       INTEGER NOT NULL DEFAULT 0,
    cost_usd            REAL    NOT NULL DEFAULT 0,
    error_class         TEXT,
    reason              TEXT,
    output              TEXT,
    compensation        TEXT,
    compensation_reason TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE wave_attempts (
    run_id      TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    context     TEXT    NOT NULL,
    started_us  INTEGER NOT NULL,
    finished_us INTEGER,
    outcome     TEXT,
    error_class TEXT,
    reason      TEXT,
    reformats   INTEGER NOT NULL DEFAULT 0,
    pid         INTEGER,
    PRIMARY KEY (run_id, task_id, attempt),
    FOREIGN KEY (run_id, task_id) REFERENCES wave_tasks (run_id, task_id)
);
"""),
    (4, "gate results cache; audit index by kind and time", """
CREATE TABLE gate_results (
    tree          TEXT    NOT NULL,
    check_key     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    tier          INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    exit_code     INTEGER,
    duration_ms   INTEGER NOT NULL,
    output_tail   TEXT    NOT NULL,
    output_sha256 TEXT    NOT NULL,
    output_bytes  INTEGER NOT NULL,
    finished_us   INTEGER NOT NULL,
    PRIMARY KEY (tree, check_key)
);
CREATE INDEX gate_results_by_finished ON gate_results (finished_us);
CREATE INDEX audit_by_kind_ts ON audit (kind, ts_us);
"""),
    (5, "claims remember the decision", """
ALTER TABLE claims ADD COLUMN decision TEXT;
"""),
    (6, "a half-open breaker's trial has an owner and an expiry", """
ALTER TABLE breakers ADD COLUMN trial_owner TEXT;
ALTER TABLE breakers ADD COLUMN trial_expires_us INTEGER;
"""),
    (7, "policy trust per project, pinned policy per session", """
CREATE TABLE policy_trust (
    project         TEXT PRIMARY KEY,
    config          TEXT    NOT NULL,
    digest          TEXT    NOT NULL,
    origin          TEXT    NOT NULL,
    updated_us      INTEGER NOT NULL
);
CREATE TABLE policy_pins (
    session_id TEXT PRIMARY KEY,
    project    TEXT    NOT NULL,
    config     TEXT    NOT NULL,
    digest     TEXT    NOT NULL,
    pinned_us  INTEGER NOT NULL
);
CREATE INDEX policy_pins_by_project ON policy_pins (project, pinned_us);
CREATE TABLE policy_changes (
    session_id TEXT    NOT NULL,
    change     TEXT    NOT NULL,
    ts_us      INTEGER NOT NULL,
    PRIMARY KEY (session_id, change)
);
"""),
    (8, "rows say which host wrote them", """
ALTER TABLE leases ADD COLUMN host TEXT;
ALTER TABLE claims ADD COLUMN host TEXT;
CREATE INDEX leases_by_host ON leases (host);
"""),
    (9, "the token and dollar ledger; the shared rate-limit gate", """
CREATE TABLE ledger (
    id                 TEXT PRIMARY KEY,
    session_id         TEXT    NOT NULL,
    project            TEXT    NOT NULL,
    host               TEXT    NOT NULL,
    agent_id           TEXT,
    agent_type         TEXT    NOT NULL,
    kind               TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    state              TEXT    NOT NULL,
    reserved_usd       REAL    NOT NULL,
    reserved_tokens    INTEGER NOT NULL,
    input_tokens       INTEGER NOT NULL DEFAULT 0,
    output_tokens      INTEGER NOT NULL DEFAULT 0,
    cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
    cache_write_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    priced             TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    run_id             TEXT,
    task_id            TEXT,
    created_us         INTEGER NOT NULL,
    settled_us         INTEGER
);
CREATE INDEX ledger_by_created ON ledger (created_us);
CREATE INDEX ledger_by_session ON ledger (session_id, state);
CREATE INDEX ledger_by_agent ON ledger (agent_id, state);
CREATE INDEX ledger_by_kind ON ledger (kind, state, settled_us);
CREATE TABLE rate_gate (
    scope      TEXT PRIMARY KEY,
    until_us   INTEGER NOT NULL,
    status     INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    updated_us INTEGER NOT NULL
);
"""),
)
