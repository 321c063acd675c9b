"""Every table of the application on one `metadata`: what Alembic compares the migrations
with (storage/migrations/env.py) and what the tests create and drop."""

from __future__ import annotations

from storage import dlq_index, dlq_tables, models
from storage.metadata import metadata

__all__ = ["dlq_index", "dlq_tables", "metadata", "models"]
