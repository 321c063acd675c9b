"""ChemicalStatus: keep the newest regulatory status of each chemical, and its history.

Events arrive late, out of order and more than once (retry tiers, DLQ replays, producers that
resend). The current status must therefore be decided by the event's own time, not by the
order in which we happen to process events: an older event is recorded in the history but
never overwrites a newer status. The comparison is done by PostgreSQL in the upsert itself,
so two workers racing on the same chemical cannot both "win" (no read-then-write gap).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy import and_, func, insert, or_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from common.settings import Settings
from consumers.handlers.base import nothing_outside_the_database
from schemas.events import ChemicalStatusPayload, Event
from storage import bulk
from storage.models import chemical_status_history, chemicals

# The set-based form of `apply` for a whole batch, in one statement (one round trip): the
# result is the same as applying the events one by one in list order. An event is "applied"
# when it is newer than both the status in place and every earlier event of the batch for
# its chemical; the newest applied event of each chemical is upserted (with the newest known
# CAS number), guarded by the same "newer" condition as `apply` against a concurrent writer;
# every event gets its history row, in list order. "Newer" compares (occurred_at, event_id
# in byte order) as one fixed-width text key: microseconds, then the canonical 36-character
# UUID. The chemicals in place are locked (in id order) so that the flags hold.
_RANK = "to_char({at} AT TIME ZONE 'UTC', 'YYYYMMDDHH24MISSUS') || {event_id}"
APPLY_BATCH = f"""
WITH incoming AS (
    SELECT t.*, {_RANK.format(at="t.occurred_at", event_id="t.event_id")} COLLATE "C" AS rank
    FROM unnest(%(chemical_id)s::text[], %(cas_number)s::text[], %(status)s::text[],
                %(regulation)s::text[], %(occurred_at)s::timestamptz[], %(event_id)s::text[])
         WITH ORDINALITY
         AS t(chemical_id, cas_number, status, regulation, occurred_at, event_id, n)
), in_place AS (
    SELECT c.chemical_id,
           {_RANK.format(at="c.status_occurred_at", event_id="c.status_event_id")}
               COLLATE "C" AS rank
    FROM chemicals c
    WHERE c.chemical_id IN (SELECT chemical_id FROM incoming)
    ORDER BY c.chemical_id
    FOR UPDATE
), judged AS (
    SELECT i.*, i.rank > GREATEST(
               coalesce(p.rank, ''),
               coalesce(max(i.rank) OVER (PARTITION BY i.chemical_id ORDER BY i.n
                        ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), '')) AS applied
    FROM incoming i LEFT JOIN in_place p USING (chemical_id)
), newest AS (
    -- The newest applied event of each chemical, with the newest CAS number among its
    -- applied events: a window over the applied rows, not a subquery per chemical (that
    -- scanned the batch once per chemical: 160 us per event of PostgreSQL CPU at 500).
    SELECT DISTINCT ON (a.chemical_id) a.chemical_id, a.status, a.regulation, a.occurred_at,
           a.event_id, a.newest_cas AS cas_number
    FROM (SELECT j.*, first_value(j.cas_number) OVER (
                     PARTITION BY j.chemical_id
                     ORDER BY j.cas_number IS NOT NULL DESC, j.rank DESC) AS newest_cas
          FROM judged j WHERE j.applied) a
    ORDER BY a.chemical_id, a.rank DESC
), upserted AS (
    INSERT INTO chemicals AS c
        (chemical_id, cas_number, status, regulation, status_occurred_at, status_event_id)
    SELECT chemical_id, cas_number, status, regulation, occurred_at, event_id FROM newest
    ON CONFLICT (chemical_id) DO UPDATE SET
        status = EXCLUDED.status,
        regulation = EXCLUDED.regulation,
        cas_number = coalesce(EXCLUDED.cas_number, c.cas_number),
        status_occurred_at = EXCLUDED.status_occurred_at,
        status_event_id = EXCLUDED.status_event_id,
        updated_at = now()
    WHERE c.status_occurred_at < EXCLUDED.status_occurred_at
       OR (c.status_occurred_at = EXCLUDED.status_occurred_at
           AND c.status_event_id COLLATE "C" < EXCLUDED.status_event_id COLLATE "C")
)
INSERT INTO chemical_status_history
    (chemical_id, status, regulation, occurred_at, event_id, applied)
SELECT chemical_id, status, regulation, occurred_at, event_id, applied FROM judged ORDER BY n
"""


class ChemicalStatusHandler:
    """Upserts `chemicals` (newest event wins) and appends to `chemical_status_history`.

    Database-only: `perform` does nothing, so there is no dependency and no breaker.

    Lock contention is *not* handled here. The engine sets `lock_timeout`
    (storage/db.py), so a row held by another transaction makes `apply` raise
    `sqlalchemy.exc.OperationalError` (psycopg2 `LockNotAvailable`, SQLSTATE 55P03) after
    that timeout; the runtime classifies it as transient and retries the event later.
    Catching it here would only hide it.
    """

    event_type: ClassVar[str] = "ChemicalStatus"
    dependency: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        """Built like every handler (consumers/handlers/__init__.py); it needs no setting."""

    # Nothing happens outside the database for a status change.
    perform = nothing_outside_the_database

    def apply_batch(self, conn: Connection, events: list[Event]) -> None:
        """`apply` for every event, in order, in one statement (APPLY_BATCH above)."""
        payloads: list[ChemicalStatusPayload] = [e.payload for e in events]
        columns: dict[str, list[Any]] = {
            "chemical_id": [p.chemical_id for p in payloads],
            "cas_number": [p.cas_number for p in payloads],
            "status": [p.status for p in payloads],
            "regulation": [p.regulation for p in payloads],
            "occurred_at": [e.occurred_at for e in events],
            "event_id": [e.event_id for e in events],
        }
        bulk.execute(conn, APPLY_BATCH, {k: bulk.array_literal(v) for k, v in columns.items()})

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        """Upsert the status unless a newer one is in place, then record the event."""
        payload: ChemicalStatusPayload = event.payload
        insert_row = pg_insert(chemicals).values(
            chemical_id=payload.chemical_id,
            cas_number=payload.cas_number,
            status=payload.status,
            regulation=payload.regulation,
            status_occurred_at=event.occurred_at,
            status_event_id=event.event_id,
        )
        new = insert_row.excluded
        # Tie-break on the event id under the "C" collation: byte order, identical on every
        # database whatever its default collation, so replays converge to the same winner.
        current_id = chemicals.c.status_event_id.collate("C")
        newer = or_(
            chemicals.c.status_occurred_at < new.status_occurred_at,
            and_(
                chemicals.c.status_occurred_at == new.status_occurred_at,
                current_id < new.status_event_id.collate("C"),
            ),
        )
        upsert = insert_row.on_conflict_do_update(
            index_elements=[chemicals.c.chemical_id],
            set_={
                "status": new.status,
                "regulation": new.regulation,
                # A status event without a CAS number does not erase one we already know.
                "cas_number": func.coalesce(new.cas_number, chemicals.c.cas_number),
                "status_occurred_at": new.status_occurred_at,
                "status_event_id": new.status_event_id,
                "updated_at": func.now(),
            },
            where=newer,
        ).returning(chemicals.c.chemical_id)
        # RETURNING yields a row for an insert or an update that passed the WHERE, and
        # nothing when the conflict was resolved in favour of the newer row in place.
        applied = conn.execute(upsert).first() is not None

        conn.execute(
            insert(chemical_status_history).values(
                chemical_id=payload.chemical_id,
                status=payload.status,
                regulation=payload.regulation,
                occurred_at=event.occurred_at,
                event_id=event.event_id,
                applied=applied,
            )
        )
