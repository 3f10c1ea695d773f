"""Local Kafka (KRaft) and Redis processes for development, demos and tests."""
