-- Jobs and counters of one host. Columns carry no type except the JSON ones: SQLite then
-- stores each value as given (an integer progress stays an integer), as runspace 0.1 did.
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id,
    job,
    params TEXT,
    requestor,
    log_user,
    state,
    priority,
    concurrency_key,
    batch_id,
    idempotency_key,
    request_hash,
    attempt,
    max_attempts,
    result TEXT,
    error_type,
    error_message,
    exit_code,
    signal,
    reason,
    killed_at,
    progress,
    total,
    message,
    pid,
    pid_started,
    processed_by,
    requested_at,
    started_at,
    finished_at,
    updated_at,
    not_before,
    UNIQUE (id)
);
CREATE INDEX IF NOT EXISTS jobs_requestor ON jobs (requestor, seq);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_batch ON jobs (batch_id, seq);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs (requestor, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
