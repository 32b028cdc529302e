"""The engine developers' simulator: scenario files run through the real core on an
in-memory host, with failures and crashes injected by the port decorators."""
