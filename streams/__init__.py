"""Kafka in, Kafka out: event sources, producers and the stream-processing app."""
