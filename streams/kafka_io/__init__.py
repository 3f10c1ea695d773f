"""Kafka adapters: client configs, producing, reading topics, group membership."""
