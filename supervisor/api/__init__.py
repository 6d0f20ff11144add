"""The HTTP API (CONTRACT §5), served by uvicorn on the Unix socket."""
