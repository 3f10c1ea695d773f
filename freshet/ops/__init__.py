"""Operator views and tools: tailing the list topic, dead-letter inspection and re-drive."""
