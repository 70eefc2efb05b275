"""Worker code for the race, fault and server tests (run in subprocesses, so importable)."""
