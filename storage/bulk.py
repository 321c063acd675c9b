"""The multi-row statements of the batch writer (storage/writer.py), as plain SQL."""

from __future__ import annotations

from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy.engine import Connection

# The two statements every event pays for, as plain SQL run with psycopg2's execute_values:
# measured on a batch of 500, SQLAlchemy's executemany ("insertmanyvalues") spent ~60 us of
# Python (under the GIL the poll thread needs) per event building parameters; this is ~10x
# less. The column lists mirror storage/models.py (tests/integration cover both paths).
_DEDUP_COLUMNS = "consumer_group, origin_topic, origin_partition, origin_offset"
INSERT_DEDUP_ROWS = (
    f"INSERT INTO dedup_keys ({_DEDUP_COLUMNS}, event_id) VALUES %s "
    f"ON CONFLICT DO NOTHING RETURNING {_DEDUP_COLUMNS}"
)
_RECORD_COLUMNS = (
    "consumer_group, origin_topic, origin_partition, origin_offset, event_type, event_id, "
    "event_key, status, attempts, last_error, processing_ms, first_seen_at, updated_at"
)
UPSERT_EVENT_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) VALUES %s "
    f"ON CONFLICT ({_DEDUP_COLUMNS}) DO UPDATE SET status = excluded.status, "
    "attempts = excluded.attempts, last_error = excluded.last_error, "
    "processing_ms = excluded.processing_ms, event_id = excluded.event_id, "
    "updated_at = excluded.updated_at"
)
INSERT_DUPLICATE_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) VALUES %s ON CONFLICT DO NOTHING"
)


def values(
    conn: Connection, sql: str, rows: list[tuple[Any, ...]], *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    """Run `sql` (one VALUES %s) for all rows, 1,000 rows per statement, on the connection of
    the current transaction."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        result = execute_values(cursor, sql, rows, page_size=1000, fetch=fetch)
    finally:
        cursor.close()
    return list(result or [])
