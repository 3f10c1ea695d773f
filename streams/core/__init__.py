"""Pure rules and processors: no I/O clients, no settings, no environment."""
