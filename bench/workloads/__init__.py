"""One module per workload family; each exposes `run(ctx) -> list[Row]`."""
