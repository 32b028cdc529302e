"""Contract suites for ports, run against the in-memory adapter and the real one."""
