"""Avro schemas of the Q-Chem events and the codec that turns Kafka bytes into typed events."""
