-- The cgroup a running job was started in (fork-server cgroups are not named after the job).
ALTER TABLE jobs ADD COLUMN cgroup TEXT;
