-- Queue operations (CONTRACT §14): dependencies, restarts, retention and queue control.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS after_ids JSONB NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS restarted_from TEXT;
-- Retention finds the oldest finished jobs without reading the others.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Pause and parallel settings that admins change at run time: one JSON document, shared by every host.
CREATE TABLE IF NOT EXISTS queue_control (name TEXT PRIMARY KEY, value JSONB NOT NULL);
