"""Retry tiers and the dead-letter topic: naming, pure retry policy, headers, routing."""
