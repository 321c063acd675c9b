"""`dlq summary` / `GET /api/v1/dlq/summary` from the DLQ index: one GROUP BY per call.

Per type: counts by error class and failure kind with oldest/newest, replayed, hidden by a
purge, and for business-critical types the review states - the shape `dlq summary --json`
always had, plus `critical` and `review`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.dlq import dlq_topic, iso
from ops.dlq_query import Query, joined_entries, status_column, time_to_ms, where_clauses
from storage.dlq_index import dlq_entries


def summary(settings: Settings, engine: Engine, types: Sequence[str]) -> list[dict[str, Any]]:
    """Per type: counts by error class and failure kind, replayed, hidden, review states -
    the shape `dlq summary --json` always had, plus `review` for critical types."""
    e = dlq_entries.c
    status = status_column(settings.critical_types).label("status")
    stmt = (
        select(
            e.event_type,
            e.error_class,
            e.failure_kind,
            status,
            func.count().label("n"),
            func.min(e.dead_lettered_at).label("oldest"),
            func.max(e.dead_lettered_at).label("newest"),
        )
        .select_from(joined_entries())
        .where(*where_clauses(settings, Query(tuple(types), status="hidden"))[:2])
        .group_by(e.event_type, e.error_class, e.failure_kind, status)
    )
    with engine.connect() as conn:
        groups = conn.execute(stmt).all()
    return [_summary_row(settings, t, [g for g in groups if g.event_type == t]) for t in types]


def _summary_row(settings: Settings, event_type: str, groups: list[Any]) -> dict[str, Any]:
    visible = [g for g in groups if g.status != "hidden"]
    by_error: dict[tuple[str, str], list[Any]] = {}
    for g in visible:
        by_error.setdefault((g.error_class or "-", g.failure_kind or "-"), []).append(g)

    def when(rows: list[Any], pick: Any, attr: str) -> str | None:
        stamps = [getattr(r, attr) for r in rows]
        return iso(time_to_ms(pick(stamps))) if stamps else None

    states: dict[str, int] = {}
    for g in visible:
        states[g.status] = states.get(g.status, 0) + g.n
    row: dict[str, Any] = {
        "event_type": event_type,
        "topic": dlq_topic(settings, event_type),
        "count": sum(g.n for g in visible),
        "replayed": states.get("replayed", 0),
        "oldest": when(visible, min, "oldest"),
        "newest": when(visible, max, "newest"),
        "by_error": [
            {
                "error_class": error_class,
                "failure_kind": kind,
                "count": sum(r.n for r in rows),
                "oldest": when(rows, min, "oldest"),
                "newest": when(rows, max, "newest"),
            }
            for (error_class, kind), rows in sorted(
                by_error.items(), key=lambda item: -sum(r.n for r in item[1])
            )
        ],
        "hidden_by_purge": sum(g.n for g in groups if g.status == "hidden"),
        "critical": event_type in settings.critical_types,
    }
    if row["critical"]:
        row["review"] = {
            s: states.get(s, 0) for s in ("pending", "approved", "rejected", "replayed")
        }
    return row
