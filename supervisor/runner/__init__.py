"""Running job processes: launch, watch, kill, reap, re-adopt."""
