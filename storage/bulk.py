"""The multi-row statements of the batch writer (storage/writer.py), as plain SQL."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy.engine import Connection

# The statements every event pays for, as plain SQL taking one array per column and turning
# them back into rows with `unnest`, each array sent as ONE text literal (`array_literal`).
# Measured on this machine (100,000 event records in 500-row transactions, us per event,
# Python / PostgreSQL backend CPU): execute_values' multi-row VALUES 27 / 33; psycopg2's own
# list adaptation (ARRAY[...] of 6,500 constants for PostgreSQL to parse) 26 / 24; one text
# literal per column 11 / 15. COPY was cheaper still (8 / 7) but cannot say ON CONFLICT,
# which is the dedup. The column lists mirror storage/models.py.
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
# A batch's records share one time (first seen = updated = the write's), sent once rather
# than as two arrays: str() of a datetime was the costliest cell to encode.
_RECORD_ARRAYS = (
    "%s::text[], %s::text[], %s::int[], %s::bigint[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::int[], %s::text[], %s::int[]"
)
_RECORD_ROWS = (  # the two times after the arrays, as in the parameters (bulk.values)
    f"SELECT * FROM unnest({_RECORD_ARRAYS}) "
    "CROSS JOIN (SELECT %s::timestamptz, %s::timestamptz) AS times"
)
UPSERT_EVENT_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) {_RECORD_ROWS} "
    f"ON CONFLICT ({_DEDUP_COLUMNS}) DO UPDATE SET status = excluded.status, "
    "attempts = excluded.attempts, last_error = excluded.last_error, "
    "processing_ms = excluded.processing_ms, event_id = excluded.event_id, "
    "updated_at = excluded.updated_at"
)
INSERT_DUPLICATE_RECORDS = (
    f"INSERT INTO event_records ({_RECORD_COLUMNS}) {_RECORD_ROWS} ON CONFLICT DO NOTHING"
)


def values(
    conn: Connection,
    sql: str,
    rows: list[tuple[Any, ...]],
    *,
    fetch: bool = False,
    shared: tuple[Any, ...] = (),
) -> list[tuple[Any, ...]]:
    """Run `sql` (one `unnest` of one array per column, then the `shared` parameters) for all
    rows in one statement, on the connection of the current transaction."""
    if not rows:
        return []
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        arrays = [array_literal(column) for column in zip(*rows, strict=True)]
        cursor.execute(sql, [*arrays, *shared])
        return list(cursor.fetchall()) if fetch else []
    finally:
        cursor.close()


def array_literal(values: Iterable[Any]) -> str:
    """A PostgreSQL array literal (`{"a","b",NULL}`) of `values`, for a `%s::type[]` parameter.

    Every element is quoted, so any text is safe but NUL (which PostgreSQL text refuses
    anyway); None is NULL; numbers and datetimes are written with str(), which PostgreSQL
    reads back exactly (a datetime with its UTC offset). Written for speed (it runs for every
    cell the writer sends): no call per element, and escaping only when some text needs it."""
    texts = [v if v.__class__ is str or v is None else str(v) for v in values]
    if not texts:
        return "{}"
    if None in texts:
        return "{" + ",".join("NULL" if t is None else _quoted(t) for t in texts) + "}"
    strings = cast(list[str], texts)  # no None left
    joined = '","'.join(strings)
    if "\\" in joined or joined.count('"') != 2 * (len(strings) - 1):
        return "{" + ",".join(_quoted(t) for t in strings) + "}"
    return '{"' + joined + '"}'


def _quoted(text: str) -> str:
    if "\\" in text or '"' in text:
        text = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def execute(conn: Connection, sql: str, params: dict[str, Any]) -> None:
    """Run one plain-SQL statement with named `%(name)s` parameters on the connection of the
    current transaction. The set-based handlers pass a whole batch to one `unnest(...)`
    statement this way, each column an `array_literal`."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
    finally:
        cursor.close()
