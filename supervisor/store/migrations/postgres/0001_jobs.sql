-- Jobs, counters and host leases of a queue shared by several daemons.
CREATE TABLE jobs (
    seq              BIGSERIAL PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    job              TEXT NOT NULL,
    params           JSONB NOT NULL,
    requestor        TEXT NOT NULL,
    log_user         TEXT NOT NULL,
    state            TEXT NOT NULL,
    priority         INTEGER NOT NULL DEFAULT 0,
    concurrency_key  TEXT,
    batch_id         TEXT,
    idempotency_key  TEXT,
    request_hash     TEXT,
    attempt          INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 1,
    result           JSONB,
    error_type       TEXT,
    error_message    TEXT,
    exit_code        INTEGER,
    signal           INTEGER,
    reason           TEXT,
    killed_at        DOUBLE PRECISION,
    progress         DOUBLE PRECISION,
    total            DOUBLE PRECISION,
    message          TEXT,
    pid              INTEGER,
    pid_started      DOUBLE PRECISION,
    processed_by     TEXT,
    requested_at     DOUBLE PRECISION NOT NULL,
    started_at       DOUBLE PRECISION,
    finished_at      DOUBLE PRECISION,
    updated_at       DOUBLE PRECISION NOT NULL,
    not_before       DOUBLE PRECISION NOT NULL DEFAULT 0,
    -- set by any daemon; acted on by the daemon in processed_by
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX jobs_requestor ON jobs (requestor, seq);
CREATE INDEX jobs_state ON jobs (state, seq);
CREATE INDEX jobs_batch ON jobs (batch_id, seq);
CREATE INDEX jobs_running ON jobs (processed_by, job, concurrency_key) WHERE state = 'running';
CREATE INDEX jobs_queued ON jobs (priority DESC, seq) WHERE state = 'queued';
CREATE UNIQUE INDEX jobs_idem ON jobs (requestor, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);

-- One row per live daemon; expires_at is in the database's clock, so host clocks never matter.
CREATE TABLE hosts (
    host_id    TEXT PRIMARY KEY,
    pid        INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
