"""Manual review of business-critical dead letters (CRITICAL_TYPES) and the audit trail.

A critical type's dead letter is never auto-redriven nor sent by a filter replay
(ops/dlq_jobs.py). It waits, *pending* (no `dlq_reviews` row), for a person who either

* approves it: the approval claims the record in one statement (INSERT ... ON CONFLICT DO
  UPDATE ... WHERE ... RETURNING), so of two people approving at once one wins and the other
  gets a conflict; then the record is replayed as a one-record job and, once the broker
  confirmed it, the state becomes *replayed*. The replay keeps the origin identity, so the
  consumer's dedup applies its effect at most once even if it is ever sent again. An approval
  whose replay was not confirmed stays *approved*; it may be approved again after
  `STALE_APPROVAL` (the first approver's process may have died mid-replay);
* rejects it, with a reason: it stays in the DLQ, *rejected*, and is never replayed.

Every mutation of the DLQ (approve, reject, replay, purge) writes a `dlq_audit` row with the
actor, in the transaction of the change where there is one.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection, Engine

from common.settings import Settings
from ops.dlq import DlqProblem, DlqUsageError, Filters, dlq_topic, parse_ref
from ops.dlq_jobs import ReplayRequest, create_job, plan, run_job
from storage.dlq_index import dlq_audit, dlq_entries, dlq_reviews
from storage.dlq_tables import dlq_purged_records

STALE_APPROVAL = timedelta(minutes=5)
REASON_MAX = 1_000


class NotFound(DlqProblem):
    """No such record, job or page (HTTP 404)."""


class Conflict(DlqProblem):
    """The record is not in a state that allows this (HTTP 409)."""


def audit(
    conn: Connection, actor: str, action: str, ref: str | None, detail: dict[str, Any]
) -> None:
    conn.execute(insert(dlq_audit).values(actor=actor[:200], action=action, ref=ref, detail=detail))


def _reason(reason: str | None, required: bool) -> str | None:
    text = (reason or "").strip()
    if required and not text:
        raise DlqUsageError("reason: say why (it is kept with the review)")
    if len(text) > REASON_MAX:
        raise DlqUsageError(f"reason: at most {REASON_MAX} characters")
    return text or None


def _position(settings: Settings, ref: str) -> tuple[str, dict[str, Any]]:
    event_type, partition, offset = parse_ref(ref)
    if event_type not in settings.critical_types:
        raise DlqUsageError(
            f"{event_type} is not business-critical (CRITICAL_TYPES): replay it instead"
        )
    key = {
        "dlq_topic": dlq_topic(settings, event_type),
        "dlq_partition": partition,
        "dlq_offset": offset,
    }
    return event_type, key


def _where(table: Any, key: dict[str, Any]) -> Any:
    return and_(*(table.c[name] == value for name, value in key.items()))


def _check_entry(conn: Connection, ref: str, key: dict[str, Any]) -> None:
    if (
        conn.execute(select(dlq_entries.c.dlq_offset).where(_where(dlq_entries, key))).first()
        is None
    ):
        raise NotFound(f"no dead letter {ref} in the index")
    if conn.execute(
        select(dlq_purged_records.c.dlq_offset).where(_where(dlq_purged_records, key))
    ).first():
        raise Conflict(f"{ref} was purged")


def _current(conn: Connection, key: dict[str, Any]) -> str:
    row = conn.execute(select(dlq_reviews).where(_where(dlq_reviews, key))).mappings().first()
    if row is None:
        return "pending"
    return f"{row['state']} (by {row['actor']} at {row['updated_at'].isoformat()})"


def approve(
    settings: Settings,
    engine: Engine,
    ref: str,
    *,
    actor: str,
    reason: str | None = None,
    target: str = "main",
) -> dict[str, Any]:
    """Approve a pending critical dead letter and replay it once; the review afterwards."""
    event_type, key = _position(settings, ref)
    why = _reason(reason, required=False)
    job_id = uuid.uuid4()
    now = datetime.now(UTC)
    with engine.begin() as conn:
        _check_entry(conn, ref, key)
        stmt = pg_insert(dlq_reviews).values(
            **key,
            event_type=event_type,
            state="approved",
            actor=actor[:200],
            reason=why,
            replay_id=job_id,
            updated_at=now,
        )
        claim = stmt.on_conflict_do_update(
            index_elements=list(key),
            set_={"actor": actor[:200], "reason": why, "replay_id": job_id, "updated_at": now},
            where=and_(
                dlq_reviews.c.state == "approved", dlq_reviews.c.updated_at < now - STALE_APPROVAL
            ),
        ).returning(dlq_reviews.c.dlq_offset)
        if conn.execute(claim).first() is None:
            raise Conflict(f"{ref} is already {_current(conn, key)}")
        audit(conn, actor, "approve", ref, {"reason": why, "target": target, "job": str(job_id)})
    request = ReplayRequest(
        event_type,
        Filters(partition=key["dlq_partition"]),
        rate=1_000.0,
        target=target,
        positions=((key["dlq_partition"], key["dlq_offset"]),),
    )
    chosen = plan(settings, engine, request, approved=True)
    create_job(engine, request, chosen, actor, job_id=job_id)
    outcome = run_job(settings, engine, job_id, chosen, rate=request.rate)
    state = "approved"
    if outcome.replayed == 1:
        with engine.begin() as conn:
            conn.execute(
                update(dlq_reviews)
                .where(_where(dlq_reviews, key), dlq_reviews.c.replay_id == job_id)
                .values(state="replayed", updated_at=datetime.now(UTC))
            )
            audit(conn, actor, "replayed", ref, {"job": str(job_id), "target": chosen.target})
        state = "replayed"
    return {"ref": ref, "state": state, "job": str(job_id), "failed": outcome.failed}


def reject(
    settings: Settings, engine: Engine, ref: str, *, actor: str, reason: str | None
) -> dict[str, Any]:
    """Reject a pending critical dead letter: it stays in the DLQ and is never replayed."""
    event_type, key = _position(settings, ref)
    why = _reason(reason, required=True)
    with engine.begin() as conn:
        _check_entry(conn, ref, key)
        stmt = (
            pg_insert(dlq_reviews)
            .values(**key, event_type=event_type, state="rejected", actor=actor[:200], reason=why)
            .on_conflict_do_nothing()
            .returning(dlq_reviews.c.dlq_offset)
        )
        if conn.execute(stmt).first() is None:
            raise Conflict(f"{ref} is already {_current(conn, key)}")
        audit(conn, actor, "reject", ref, {"reason": why})
    return {"ref": ref, "state": "rejected", "actor": actor, "reason": why}


def history(engine: Engine, ref: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Audit rows, newest first: of one record, or of everything."""
    stmt = select(dlq_audit).order_by(dlq_audit.c.id.desc()).limit(limit)
    if ref is not None:
        stmt = stmt.where(dlq_audit.c.ref == ref)
    with engine.connect() as conn:
        rows = conn.execute(stmt).mappings().all()
    return [
        {
            "id": row["id"],
            "at": row["at"].isoformat(),
            "actor": row["actor"],
            "action": row["action"],
            "ref": row["ref"],
            "detail": row["detail"],
        }
        for row in rows
    ]
