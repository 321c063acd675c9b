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
from storage.models import chemical_status_history, chemicals


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
