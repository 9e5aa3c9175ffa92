"""PostgreSQL schema migrations. Append only: a shipped migration is never edited.

The tables mirror SQLite's (migrations 1-8) column for column, so the repositories run the
same SQL on both. Every table also says which host and which writer (process) wrote each
row: the columns default to settings each connection makes on connecting.
"""

from __future__ import annotations

__all__ = ["PG_MIGRATIONS"]

_WHO = ("host   TEXT DEFAULT current_setting('smart_orchestrator.host', true),\n"
        "    writer TEXT DEFAULT current_setting('smart_orchestrator.writer', true)")

PG_MIGRATIONS: tuple[tuple[int, str, str], ...] = (
    (1, "team store: the SQLite schema 8, with the writer of every row", f"""
CREATE TABLE audit (
    seq       BIGINT PRIMARY KEY,
    ts_us     BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    data      TEXT   NOT NULL,
    prev_hash TEXT   NOT NULL,
    hash      TEXT   NOT NULL UNIQUE,
    {_WHO}
);
CREATE INDEX audit_by_kind_ts ON audit (kind, ts_us);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit log is append-only: % rejected', TG_OP;
END $$;
CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    count BIGINT NOT NULL,
    seq   BIGINT NOT NULL,
    hash  TEXT   NOT NULL
);
CREATE TABLE checkpoints (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT   NOT NULL,
    created_us BIGINT NOT NULL,
    sha256     TEXT   NOT NULL,
    size       BIGINT NOT NULL,
    payload    BYTEA  NOT NULL,
    {_WHO}
);
CREATE INDEX checkpoints_by_name ON checkpoints (name, id);
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE leases (
    id          TEXT PRIMARY KEY,
    session_id  TEXT    NOT NULL,
    agent_id    TEXT,
    agent_type  TEXT    NOT NULL,
    owner_pid   BIGINT,
    depth       INTEGER NOT NULL,
    background  INTEGER NOT NULL DEFAULT 0,
    acquired_us BIGINT  NOT NULL,
    expires_us  BIGINT  NOT NULL,
    {_WHO}
);
CREATE INDEX leases_by_agent ON leases (agent_id);
CREATE INDEX leases_by_session ON leases (session_id);
CREATE INDEX leases_by_host ON leases (host);
CREATE TABLE spawns (
    ts_us      BIGINT NOT NULL,
    session_id TEXT   NOT NULL,
    {_WHO}
);
CREATE INDEX spawns_by_session ON spawns (session_id, ts_us);
CREATE INDEX spawns_by_ts ON spawns (ts_us);
CREATE TABLE agents (
    agent_id   TEXT PRIMARY KEY,
    session_id TEXT    NOT NULL,
    agent_type TEXT    NOT NULL,
    depth      INTEGER NOT NULL,
    started_us BIGINT  NOT NULL,
    stopped_us BIGINT,
    {_WHO}
);
CREATE TABLE breakers (
    agent_type       TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    opened_us        BIGINT,
    failures         TEXT NOT NULL,
    trial_owner      TEXT,
    trial_expires_us BIGINT,
    {_WHO}
);
CREATE TABLE claims (
    key      TEXT PRIMARY KEY,
    owner    TEXT   NOT NULL,
    ts_us    BIGINT NOT NULL,
    decision TEXT,
    {_WHO}
);
CREATE INDEX claims_by_ts ON claims (ts_us);
CREATE TABLE wave_runs (
    run_id      TEXT   PRIMARY KEY,
    name        TEXT,
    state       TEXT   NOT NULL,
    created_us  BIGINT NOT NULL,
    updated_us  BIGINT NOT NULL,
    finished_us BIGINT,
    plan        TEXT   NOT NULL,
    options     TEXT   NOT NULL,
    owner       TEXT,
    reason      TEXT,
    stop_class  TEXT,
    stats       TEXT   NOT NULL DEFAULT '{{}}',
    {_WHO}
);
CREATE INDEX wave_runs_by_created ON wave_runs (created_us);
CREATE TABLE wave_tasks (
    run_id              TEXT    NOT NULL REFERENCES wave_runs (run_id),
    task_id             TEXT    NOT NULL,
    position            INTEGER NOT NULL,
    state               TEXT    NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    started_us          BIGINT,
    finished_us         BIGINT,
    input_tokens        BIGINT  NOT NULL DEFAULT 0,
    output_tokens       BIGINT  NOT NULL DEFAULT 0,
    cost_usd            DOUBLE PRECISION NOT NULL DEFAULT 0,
    error_class         TEXT,
    reason              TEXT,
    output              TEXT,
    compensation        TEXT,
    compensation_reason TEXT,
    {_WHO},
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE wave_attempts (
    run_id      TEXT    NOT NULL,
    task_id     TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    context     TEXT    NOT NULL,
    started_us  BIGINT  NOT NULL,
    finished_us BIGINT,
    outcome     TEXT,
    error_class TEXT,
    reason      TEXT,
    reformats   INTEGER NOT NULL DEFAULT 0,
    pid         BIGINT,
    {_WHO},
    PRIMARY KEY (run_id, task_id, attempt),
    FOREIGN KEY (run_id, task_id) REFERENCES wave_tasks (run_id, task_id)
);
CREATE TABLE gate_results (
    tree          TEXT    NOT NULL,
    check_key     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    tier          INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    exit_code     INTEGER,
    duration_ms   BIGINT  NOT NULL,
    output_tail   TEXT    NOT NULL,
    output_sha256 TEXT    NOT NULL,
    output_bytes  BIGINT  NOT NULL,
    finished_us   BIGINT  NOT NULL,
    {_WHO},
    PRIMARY KEY (tree, check_key)
);
CREATE INDEX gate_results_by_finished ON gate_results (finished_us);
CREATE TABLE policy_trust (
    project    TEXT PRIMARY KEY,
    config     TEXT   NOT NULL,
    digest     TEXT   NOT NULL,
    origin     TEXT   NOT NULL,
    updated_us BIGINT NOT NULL,
    {_WHO}
);
CREATE TABLE policy_pins (
    session_id TEXT PRIMARY KEY,
    project    TEXT   NOT NULL,
    config     TEXT   NOT NULL,
    digest     TEXT   NOT NULL,
    pinned_us  BIGINT NOT NULL,
    ins        BIGSERIAL,
    {_WHO}
);
CREATE INDEX policy_pins_by_project ON policy_pins (project, pinned_us);
CREATE TABLE policy_changes (
    session_id TEXT   NOT NULL,
    change     TEXT   NOT NULL,
    ts_us      BIGINT NOT NULL,
    {_WHO},
    PRIMARY KEY (session_id, change)
);
"""),
    (2, "the token and dollar ledger; the shared rate-limit gate", """
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
    reserved_usd       DOUBLE PRECISION    NOT NULL,
    reserved_tokens    BIGINT NOT NULL,
    input_tokens       BIGINT  NOT NULL DEFAULT 0,
    output_tokens      BIGINT  NOT NULL DEFAULT 0,
    cache_read_tokens  BIGINT  NOT NULL DEFAULT 0,
    cache_write_tokens BIGINT  NOT NULL DEFAULT 0,
    cost_usd           DOUBLE PRECISION    NOT NULL DEFAULT 0,
    priced             TEXT    NOT NULL,
    source             TEXT    NOT NULL,
    run_id             TEXT,
    task_id            TEXT,
    created_us         BIGINT NOT NULL,
    settled_us         BIGINT,
    writer TEXT DEFAULT current_setting('smart_orchestrator.writer', true)
);
CREATE INDEX ledger_by_created ON ledger (created_us);
CREATE INDEX ledger_by_session ON ledger (session_id, state);
CREATE INDEX ledger_by_agent ON ledger (agent_id, state);
CREATE INDEX ledger_by_kind ON ledger (kind, state, settled_us);
CREATE TABLE rate_gate (
    scope      TEXT PRIMARY KEY,
    until_us   BIGINT NOT NULL,
    status     INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    updated_us BIGINT NOT NULL
);
"""),
)
