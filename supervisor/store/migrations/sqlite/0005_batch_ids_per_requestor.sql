-- Batch ids are scoped per requestor (CONTRACT §12): two users may each have a batch "nightly".
CREATE TABLE batches_scoped (
    id TEXT NOT NULL,
    job TEXT NOT NULL,
    requestor TEXT NOT NULL,
    size INTEGER NOT NULL,
    request_hash TEXT NOT NULL,
    callback_job TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (requestor, id)
);
INSERT INTO batches_scoped SELECT id, job, requestor, size, request_hash, callback_job, created_at FROM batches;
DROP TABLE batches;
ALTER TABLE batches_scoped RENAME TO batches;
