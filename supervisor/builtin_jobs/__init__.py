"""Job types runspace itself provides (loaded before jobs/ and the configured directories)."""
