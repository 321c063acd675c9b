"""The multi-row statements of the batch writer (storage/writer.py), as plain SQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection

# The statements every event pays for, as plain SQL taking one array per column and turning
# them back into rows with `unnest`: psycopg2 adapts a list in C, where execute_values built
# each row's VALUES tuple with a Python-level mogrify (~60% of the writer thread's own time
# in a profile of the ChemicalStatus run). SQLAlchemy's executemany ("insertmanyvalues")
# was ~10x slower still. The column lists mirror storage/models.py (tests/integration cover
# both paths).
_DEDUP_COLUMNS = "consumer_group, origin_topic, origin_partition, origin_offset"
_DEDUP_ARRAYS = "%s::text[], %s::text[], %s::int[], %s::bigint[], %s::text[]"
INSERT_DEDUP_ROWS = (
    f"INSERT INTO dedup_keys ({_DEDUP_COLUMNS}, event_id) "
    f"SELECT * FROM unnest({_DEDUP_ARRAYS}) "
    f"ON CONFLICT DO NOTHING RETURNING {_DEDUP_COLUMNS}"
)
_RECORD_COLUMNS = (
    "consumer_group, origin_topic, origin_partition, origin_offset, event_type, event_id, "
    "event_key, status, attempts, last_error, processing_ms, first_seen_at, updated_at"
)
_RECORD_ARRAYS = (
    "%s::text[], %s::text[], %s::int[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::int[], %s::text[], %s::int[], %s::timestamptz[], %s::timestamptz[]"
)
UPSERT_EVENT_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) SELECT * FROM unnest({_RECORD_ARRAYS}) "
    f"ON CONFLICT ({_DEDUP_COLUMNS}) DO UPDATE SET status = excluded.status, "
    "attempts = excluded.attempts, last_error = excluded.last_error, "
    "processing_ms = excluded.processing_ms, event_id = excluded.event_id, "
    "updated_at = excluded.updated_at"
)
INSERT_DUPLICATE_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) SELECT * FROM unnest({_RECORD_ARRAYS}) "
    "ON CONFLICT DO NOTHING"
)


def values(
    conn: Connection, sql: str, rows: list[tuple[Any, ...]], *, fetch: bool = False
) -> list[tuple[Any, ...]]:
    """Run `sql` (one `unnest` of one array per column) for all rows in one statement, on the
    connection of the current transaction."""
    if not rows:
        return []
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
        return list(cursor.fetchall()) if fetch else []
    finally:
        cursor.close()


def execute(conn: Connection, sql: str, params: dict[str, Any]) -> None:
    """Run one plain-SQL statement with named `%(name)s` parameters on the connection of the
    current transaction. Lists become PostgreSQL arrays (psycopg2 adapts them in C), which is
    how the set-based handlers pass a whole batch to one `unnest(...)` statement."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
