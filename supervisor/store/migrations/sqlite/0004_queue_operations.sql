-- Queue operations (CONTRACT §14): dependencies, restarts, retention and queue control.
ALTER TABLE jobs ADD COLUMN after_ids TEXT NOT NULL DEFAULT '[]';
ALTER TABLE jobs ADD COLUMN restarted_from TEXT;
-- Retention finds the oldest finished jobs without reading the others.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Pause and parallel settings that admins change at run time: one JSON document.
CREATE TABLE IF NOT EXISTS queue_control (name TEXT PRIMARY KEY, value TEXT NOT NULL);
