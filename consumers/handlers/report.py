"""Report: generate a small text report and store it, inside the event's transaction.

The report is rendered from the event alone plus what `conn` reads in the same transaction,
and stamped with the event's time rather than the wall clock, so processing the same event
again renders the same text. Storing it in the event's transaction makes the report, the
dedup row and the event record appear together or not at all.

`report_id` is the business key: a second event asking for an existing report id is a
conflict no retry can resolve (PermanentError, to the DLQ for a human), while the same event
applied again is a harmless no-op.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC
from typing import Any, ClassVar

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from common.errors import PermanentError
from common.settings import Settings
from consumers.handlers.base import nothing_outside_the_database
from schemas.events import Event, ReportPayload
from schemas.safe_text import escape_controls
from storage import bulk
from storage.models import chemicals, reports

INSERT_REPORTS = (
    "INSERT INTO reports (report_id, report_type, requested_by, event_id, content) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
    "ON CONFLICT DO NOTHING RETURNING event_id"
)

STATUS_SUMMARY = "chemical-status-summary"


class ReportHandler:
    """Renders the report for a Report event and inserts it into `reports`."""

    event_type: ClassVar[str] = "Report"
    dependency: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        """Built like every handler (consumers/handlers/__init__.py); it needs no setting."""

    # Nothing happens outside the database (the report is built from it in `apply`).
    perform = nothing_outside_the_database

    def apply_batch(self, conn: Connection, events: list[Event]) -> None:
        """`apply` for every event in one insert; the rare event that finds its report id or
        event id taken is then judged as `apply` judges it (a replay, or a conflict that
        raises - and the writer falls back to one event at a time)."""
        counts: dict[str | None, list[tuple[str, int]]] = {}  # one read per regulation
        payloads: list[ReportPayload] = [e.payload for e in events]
        inserted = bulk.values(
            conn,
            INSERT_REPORTS,
            [
                (
                    p.report_id,
                    p.report_type,
                    p.requested_by,
                    e.event_id,
                    render_report(conn, e, counts),
                )
                for p, e in zip(payloads, events, strict=True)
            ],
            fetch=True,
        )
        new = {event_id for (event_id,) in inserted}
        for event in events:
            if event.event_id not in new:
                _judge_taken(conn, event)

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        """Render and insert the report; raise PermanentError on a report id conflict."""
        payload: ReportPayload = event.payload
        content = render_report(conn, event)
        # DO NOTHING on either unique key (report_id, event_id) rather than failing the
        # statement: a failed statement would abort the enclosing transaction, and we want
        # to tell a replay from a conflict first.
        inserted = conn.execute(
            pg_insert(reports)
            .values(
                report_id=payload.report_id,
                report_type=payload.report_type,
                requested_by=payload.requested_by,
                event_id=event.event_id,
                content=content,
            )
            .on_conflict_do_nothing()
            .returning(reports.c.report_id)
        ).first()
        if inserted is None:
            _judge_taken(conn, event)


def _judge_taken(conn: Connection, event: Event) -> None:
    """The report id or the event id was taken: a replay of this very event (a no-op), or a
    conflict no retry can resolve (PermanentError)."""
    payload: ReportPayload = event.payload
    existing = conn.execute(
        select(reports.c.report_id, reports.c.event_id).where(
            (reports.c.report_id == payload.report_id) | (reports.c.event_id == event.event_id)
        )
    ).all()
    if any(
        row.report_id == payload.report_id and row.event_id == event.event_id for row in existing
    ):
        return  # this very event was applied before: idempotent no-op
    owners = ", ".join(f"report {r.report_id} by event {r.event_id}" for r in existing)
    raise PermanentError(
        f"report {payload.report_id!r} from event {event.event_id} conflicts with "
        f"{owners or 'a concurrent insert'}"
    )


def render_report(
    conn: Connection, event: Event, counts: dict[str | None, list[tuple[str, int]]] | None = None
) -> str:
    """The report text: a header, then a CSV body that depends on the report type.

    Everything is sorted so that the same inputs always give the same bytes.
    """
    payload: ReportPayload = event.payload
    generated_for = event.occurred_at.astimezone(UTC).isoformat(timespec="milliseconds")
    # Every value from the event is escaped (issue 17 #8): the validator already refuses
    # control characters in Report fields, and a CR/LF here would forge the lines after it
    # for anyone who reads the report line by line - csv's quoting does not stop that.
    out = io.StringIO()
    out.write(
        f"# Q-Chem report {escape_controls(payload.report_id)}\n"
        f"# type: {escape_controls(payload.report_type)}\n"
        f"# requested_by: {escape_controls(payload.requested_by)}\n"
        f"# generated_for: {generated_for}\n"
        f"# event_id: {escape_controls(event.event_id)}\n"
    )
    writer = csv.writer(out, lineterminator="\n")
    if payload.report_type == STATUS_SUMMARY:
        regulation = payload.parameters.get("regulation")
        if regulation is not None:
            out.write(f"# regulation: {escape_controls(regulation)}\n")
        writer.writerow(["status", "count"])
        # A batch reads the counts once per regulation: its events share one transaction,
        # in which nothing changes the chemicals.
        known = {} if counts is None else counts
        if regulation not in known:
            known[regulation] = _status_counts(conn, regulation)
        by_status = known[regulation]
        writer.writerows((escape_controls(status), count) for status, count in by_status)
        writer.writerow(["TOTAL", sum(count for _, count in by_status)])
    else:
        writer.writerow(["parameter", "value"])
        writer.writerows(
            (escape_controls(name), escape_controls(value))
            for name, value in sorted(payload.parameters.items())
        )
    return out.getvalue()


def _status_counts(conn: Connection, regulation: str | None) -> list[tuple[str, int]]:
    """Chemicals by current status, read in the event's transaction (a consistent view)."""
    query = select(chemicals.c.status, func.count()).group_by(chemicals.c.status)
    if regulation is not None:
        query = query.where(chemicals.c.regulation == regulation)
    # Sort in Python: the database's collation must not change the report's bytes.
    return sorted((str(status), int(count)) for status, count in conn.execute(query))
