-- Batches: one row per batch; its items are the jobs carrying its id as batch_id.
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    requestor TEXT NOT NULL,
    size INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    callback_job TEXT,
    created_at REAL NOT NULL
);
