"""The event simulator: a planted world of users and items, its stream, and faults."""
