"""The web dashboard (`runspace ui`): a loopback web server, run as the user who started it,
that shows what the daemon lets that user see. It is one more client of the daemon's socket."""
