-- Batch ids are scoped per requestor (CONTRACT §12): two users may each have a batch "nightly".
ALTER TABLE batches DROP CONSTRAINT batches_pkey;
ALTER TABLE batches ADD PRIMARY KEY (requestor, id);
