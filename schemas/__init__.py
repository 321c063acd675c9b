"""Avro schemas of the Q-Chem events and the codec that turns Kafka bytes into typed events.

Importing the package registers the built-in event types (`schemas/catalog.py`), so whatever
uses a schema, a sample or the settings' EVENT_TYPES finds them.
"""

from schemas import catalog as _catalog  # noqa: F401  (registers the built-in event types)
