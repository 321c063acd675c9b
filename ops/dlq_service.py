"""The DLQ runbook as one service: what `qchem-events dlq ...` and the admin API both call.

Arguments arrive as text from either side (CLI options, query strings, JSON bodies) and are
checked once (ops/dlq_args.py, re-exported here): a bad one is a DlqUsageError - exit 2 in
the CLI, 400 in the API. The pieces: ops/dlq_query.py (the index), ops/dlq_jobs.py
(replays), ops/dlq_review.py (reviews, audit), ops/dlq_replay.py (purges).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from common.redaction import redact_payload
from common.settings import Settings
from ops import dlq_jobs, dlq_query, dlq_review, dlq_summary
from ops.dlq import DlqUsageError, Filters, dlq_topic, iso, parse_ref, read_one

# The argument checks (ops/dlq_args.py), re-exported: CLI and API call them through here.
from ops.dlq_args import (
    MAX_AGE_DAYS,
    PAGE_DEFAULT,
    check_partition,
    make_filters,
    parse_limit,
    parse_query,
    purge_request,
    replay_request,
    types_of,
)
from ops.dlq_purge import delete_before, hide_records, plan_time_purge
from ops.dlq_replay import select_records
from storage.dlq_tables import dlq_replays

PAYLOAD_CAP = 16_384  # bytes of payload shown by the record view
NotFound = dlq_review.NotFound
Conflict = dlq_review.Conflict

__all__ = [
    "MAX_AGE_DAYS",
    "PAGE_DEFAULT",
    "Conflict",
    "NotFound",
    "check_partition",
    "make_filters",
    "parse_limit",
    "parse_query",
    "parse_ref",
    "purge_request",
    "replay_request",
    "types_of",
]


# -- reading -----------------------------------------------------------------------------------


def sync(settings: Settings, engine: Engine, types: Sequence[str]) -> int:
    return sum(dlq_query.sync_index(settings, engine, t) for t in types)


def summary(settings: Settings, engine: Engine, types: Sequence[str]) -> dict[str, Any]:
    rows = dlq_summary.summary(settings, engine, types)
    return {"event_types": rows, "total": sum(r["count"] for r in rows)}


def redact(settings: Settings, text: str | None, limit: int = 2_000) -> str | None:
    """A text from a record (error message, header, stack) masked with the logging rules: an
    exception message can quote a payload's `password=...` as well as the payload can."""
    if text is None:
        return None
    return redact_payload(text.encode(), settings.log_redact_fields, limit)


def _shown(settings: Settings, row: dict[str, Any]) -> dict[str, Any]:
    entry = dlq_query.entry_json(row)
    entry["error_message"] = redact(settings, entry["error_message"])
    return entry


def records(
    settings: Settings, engine: Engine, query: dlq_query.Query, size: int
) -> dict[str, Any]:
    rows, cursor = dlq_query.list_page(settings, engine, query, size)
    return {"records": [_shown(settings, r) for r in rows], "next_cursor": cursor}


def record(settings: Settings, engine: Engine, ref: str) -> dict[str, Any]:
    """One dead letter: its index row, its bytes from Kafka (payload redacted with the logging
    rules and cut at PAYLOAD_CAP), headers, stack and its audit history."""
    event_type, partition, offset = parse_ref(ref)
    row = dlq_query.entry_at(settings, engine, event_type, partition, offset)
    if row is None:
        raise NotFound(f"no dead letter {ref} in the index")
    found = read_one(settings, event_type, partition, offset)
    fields = settings.log_redact_fields
    headers = [
        [n, redact(settings, v[:1000].decode("utf-8", "backslashreplace"))]
        for n, v in found.headers
    ]
    return {
        **_shown(settings, row),
        "payload": redact_payload(found.value or b"", fields, PAYLOAD_CAP),
        "payload_bytes": len(found.value or b""),
        "headers": headers,
        "error_stack": redact(settings, found.error_stack, 8_000),
        "history": dlq_review.history(engine, ref),
    }


# -- replays -----------------------------------------------------------------------------------


def replay(
    settings: Settings,
    engine: Engine,
    request: dlq_jobs.ReplayRequest,
    *,
    actor: str,
    background: bool,
    on_progress: Callable[[int], None] | None = None,
    confirm: Callable[[dlq_jobs.Plan], None] | None = None,
) -> dict[str, Any]:
    """Plan, record the job, then run it (now, or in a thread when `background`)."""
    check_partition(settings, [request.event_type], request.filters)
    chosen = dlq_jobs.plan(settings, engine, request)
    if confirm is not None and chosen.to_send and not request.dry_run:
        confirm(chosen)
    job_id = dlq_jobs.create_job(engine, request, chosen, actor)
    with engine.begin() as conn:
        action = "replay-dry-run" if request.dry_run else "replay"
        dlq_review.audit(conn, actor, action, None, {"job": str(job_id), **request.filter_json()})
    result = {
        "job": str(job_id),
        "replay_id": str(job_id),
        "dry_run": request.dry_run,
        "event_type": request.event_type,
        "target_topic": chosen.target,
        "would_replay": len(chosen.to_send) if request.dry_run else None,
        "skipped_already_replayed": chosen.skipped_replayed,
        "skipped_replay_cap": chosen.skipped_cap,
        "skipped_needs_review": chosen.skipped_review,
        "records": [dlq_jobs.ref_of(r) for r in chosen.to_send[:1000]],
        "replayed": 0,
        "failed": 0,
        "failed_records": [],
    }
    if request.dry_run:
        return result
    if background:
        threading.Thread(
            target=dlq_jobs.run_job,
            args=(settings, engine, job_id, chosen),
            kwargs={"rate": request.rate},
            name=f"replay-{job_id}",
            daemon=True,
        ).start()
        return result | {"status": "running"}
    outcome = dlq_jobs.run_job(
        settings, engine, job_id, chosen, rate=request.rate, on_progress=on_progress
    )
    return result | {
        "status": job(engine, job_id)["status"],
        "replayed": outcome.replayed,
        "failed": len(outcome.failed),
        "failed_records": outcome.failed,
    }


def _job_json(row: Any) -> dict[str, Any]:
    return {
        "job": str(row["id"]),
        "who": row["who"],
        "started_at": row["started_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "status": row["status"],
        "dry_run": row["dry_run"],
        "event_type": row["event_type"] or row["filter"].get("type"),
        "target_topic": row["target_topic"],
        "total": row["total"],
        "replayed": row["count"],
        "failed": row["failed"],
        "error": row["error"],
        "filter": row["filter"],
    }


def jobs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(dlq_replays).order_by(dlq_replays.c.started_at.desc()).limit(limit)
        ).mappings()
        return [_job_json(r) for r in rows]


def job(engine: Engine, job_id: uuid.UUID | str) -> dict[str, Any]:
    try:
        key = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    except ValueError:
        raise DlqUsageError(f"job: not a job id: {str(job_id)[:60]!r}") from None
    with engine.connect() as conn:
        row = conn.execute(select(dlq_replays).where(dlq_replays.c.id == key)).mappings().first()
    if row is None:
        raise NotFound(f"no replay job {key}")
    return _job_json(row)


def interrupt_stale_jobs(engine: Engine) -> None:
    """Jobs left running by a process that ended (the admin process starts again)."""
    with engine.begin() as conn:
        conn.execute(
            update(dlq_replays)
            .where(dlq_replays.c.status == "running")
            .where(dlq_replays.c.started_at < datetime.now(UTC) - timedelta(minutes=1))
            .values(status="interrupted", finished_at=datetime.now(UTC))
        )


approve = dlq_review.approve
reject = dlq_review.reject
history = dlq_review.history


# -- purge -------------------------------------------------------------------------------------


def purge(
    settings: Settings,
    engine: Engine,
    event_type: str,
    filters: Filters,
    *,
    older_than_days: int | None,
    dry_run: bool,
    actor: str,
    confirm: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Hide the records a filter selects, or delete (from Kafka) those older than a cutoff;
    either way an audit row says who did what."""
    if older_than_days is not None and not 0 <= older_than_days <= MAX_AGE_DAYS:
        raise DlqUsageError(f"older_than_days: from 0 to {MAX_AGE_DAYS}")
    topic = dlq_topic(settings, event_type)
    days = older_than_days if older_than_days is not None else settings.dlq_retention_days
    cutoff = int(time.time() * 1000) - days * 86_400_000
    data: dict[str, Any] = {"event_type": event_type, "topic": topic, "dry_run": dry_run}
    if filters.narrows:
        chosen = select_records(settings, engine, event_type, filters).records
        if older_than_days is not None:
            chosen = [r for r in chosen if r.timestamp_ms < cutoff]
        if chosen and not dry_run and confirm is not None:
            confirm(f"Hide {len(chosen)} record(s) of {topic}?")
        count = len(chosen) if dry_run else hide_records(engine, chosen, actor)
        data |= {"mode": "hide", "count": count, "records": [r.ref for r in chosen]}
        data["text"] = f"{'dry run: would hide' if dry_run else 'hid'} {count} record(s) of {topic}"
    else:
        cuts = plan_time_purge(settings, event_type, cutoff)
        total = sum(c.count for c in cuts)
        if total and not dry_run and confirm is not None:
            confirm(f"Delete {total} record(s) older than {iso(cutoff)} from {topic}?")
        count = total if dry_run else delete_before(settings, engine, event_type, cuts)
        data |= {
            "mode": "delete",
            "cutoff": iso(cutoff),
            "count": count,
            "partitions": [
                {"partition": c.partition, "before_offset": c.cut, "count": c.count} for c in cuts
            ],
            "text": f"{'dry run: would delete' if dry_run else 'deleted'} {count} record(s) "
            f"older than {iso(cutoff)} from {topic}",
        }
    if not dry_run:
        with engine.begin() as conn:
            detail = {k: v for k, v in data.items() if k not in ("text", "records")}
            detail["filter"] = filters.as_json()
            dlq_review.audit(conn, actor, f"purge-{data['mode']}", None, detail)
    return data
