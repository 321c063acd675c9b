"""Replay jobs: what to send (from the index), reading those records' bytes, sending them.

One code path for `qchem-events dlq replay` (runs the job in the foreground) and
`POST /api/v1/dlq/replay` (a background thread of the admin process); `dlq_replays` holds the
job: who, when, the filter, target, status, progress. The plan comes from the index
(ops/dlq_query.py), so memory is bounded by one chunk of records, not by the DLQ.

Rules that hold for every replay:
* a record replayed before is skipped unless `include_replayed`; even then a record is not
  sent once it has been replayed `max_replays` times (its replay-count header - earlier
  replays that failed again - plus the times this copy was sent): a poison record cannot be
  looped through the pipeline by a script;
* business-critical types (CRITICAL_TYPES) are never sent by a filter replay: only an approved
  review sends one (ops/dlq_review.py), so a person looked at each;
* the target is the type's main topic (default) or its first retry tier (`target="retry"`),
  which only this application's consumer group reads. Origin identity headers are kept
  either way, so the dedup key is the same and an applied effect is not applied again.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.dlq import DlqProblem, DlqUsageError, Filters, main_topic, read_dlq
from ops.dlq_query import Query, iter_entries
from ops.dlq_replay import Pacer, _mark_replayed, replay_producer, send_chunk
from retry_topics import headers as rh
from retry_topics.dlq_record import DlqRecord
from retry_topics.naming import topic_names
from storage.dlq_tables import dlq_replays
from storage.secrets import replay_signing_key

TARGETS = ("main", "retry")
DEFAULT_TARGET = "main"
DEFAULT_MAX_REPLAYS = 5
RANGE_GAP = 1_000  # positions further apart than this are read as separate ranges


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    event_type: str
    filters: Filters
    rate: float
    dry_run: bool = False
    include_replayed: bool = False
    max_replays: int = DEFAULT_MAX_REPLAYS
    target: str = DEFAULT_TARGET
    positions: tuple[tuple[int, int], ...] | None = None  # exactly these (an approval)

    def filter_json(self) -> dict[str, Any]:
        return {
            "type": self.event_type,
            **self.filters.as_json(),
            "include_replayed": self.include_replayed,
            "rate": self.rate,
            "max_replays": self.max_replays,
            "target": self.target,
            "positions": [list(p) for p in self.positions] if self.positions else None,
        }


@dataclass(slots=True)
class Plan:
    event_type: str
    target: str
    to_send: list[dict[str, Any]]  # index rows, oldest first
    skipped_replayed: int = 0
    skipped_cap: int = 0
    skipped_review: int = 0


@dataclass(slots=True)
class Outcome:
    replay_id: uuid.UUID
    dry_run: bool
    replayed: int = 0
    failed: list[str] = field(default_factory=list)
    sent_refs: list[str] = field(default_factory=list)


def target_topic(settings: Settings, event_type: str, target: str) -> str:
    if target == "main":
        return main_topic(settings, event_type)
    if target != "retry":
        raise DlqUsageError(f"target: expected one of {', '.join(TARGETS)}, got {target!r}")
    tiers = topic_names(settings, event_type).retry_tiers
    if not tiers:
        raise DlqUsageError(f"target retry: {event_type} has no retry tier (RETRIES_PER_TYPE)")
    return tiers[0].name


def ref_of(row: dict[str, Any]) -> str:
    return f"{row['event_type']}:{row['dlq_partition']}:{row['dlq_offset']}"


def plan(
    settings: Settings, engine: Engine, request: ReplayRequest, *, approved: bool = False
) -> Plan:
    """What a replay would send. `approved`: an approval's own replay of a critical record."""
    chosen = Plan(
        request.event_type, target_topic(settings, request.event_type, request.target), []
    )
    critical = request.event_type in settings.critical_types
    query = Query((request.event_type,), Filters(**{**_no_limit(request.filters)}))
    wanted = set(request.positions) if request.positions is not None else None
    limit = request.filters.limit
    for row in iter_entries(settings, engine, query):
        if wanted is not None and (row["dlq_partition"], row["dlq_offset"]) not in wanted:
            continue
        if critical and not approved:
            chosen.skipped_review += 1
            continue
        times = row.get("times_replayed") or 0
        if times and not request.include_replayed and not approved:
            chosen.skipped_replayed += 1
            continue
        if not approved and row["replay_count"] + times >= request.max_replays:
            chosen.skipped_cap += 1
            continue
        if limit is None or len(chosen.to_send) < limit:
            chosen.to_send.append(row)
    return chosen


def _no_limit(filters: Filters) -> dict[str, Any]:
    return {
        "error_class": filters.error_class,
        "since_ms": filters.since_ms,
        "until_ms": filters.until_ms,
        "partition": filters.partition,
        "event_ids": filters.event_ids,
    }


def create_job(
    engine: Engine,
    request: ReplayRequest,
    chosen: Plan,
    actor: str,
    *,
    job_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """The job's row (a dry run's is finished at once); its id is the replay id."""
    job_id = job_id or uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            insert(dlq_replays).values(
                id=job_id,
                who=actor[:200],
                filter=request.filter_json(),
                dry_run=request.dry_run,
                count=len(chosen.to_send) if request.dry_run else 0,
                event_type=request.event_type,
                target_topic=chosen.target,
                status="finished" if request.dry_run else "running",
                total=len(chosen.to_send),
                finished_at=datetime.now(UTC) if request.dry_run else None,
            )
        )
    return job_id


def read_positions(
    settings: Settings, event_type: str, rows: list[dict[str, Any]]
) -> dict[tuple[int, int], DlqRecord]:
    """The DLQ records at the rows' positions (read in ranges of nearby offsets)."""
    found: dict[tuple[int, int], DlqRecord] = {}
    for partition, start, stop in _ranges(rows):
        for record in read_dlq(settings, event_type, partition, start=start, stop=stop):
            found[record.position] = record
    wanted = {(r["dlq_partition"], r["dlq_offset"]) for r in rows}
    return {pos: rec for pos, rec in found.items() if pos in wanted}


def with_bytes(
    settings: Settings, rows: list[dict[str, Any]], marks: dict[str, Any]
) -> list[tuple[DlqRecord, Any]]:
    """Index rows (any types) -> their DLQ records, each with its replay mark from `marks`
    (type -> position -> mark); rows whose record Kafka no longer has are left out."""
    out = []
    for event_type in dict.fromkeys(r["event_type"] for r in rows):
        of_type = [r for r in rows if r["event_type"] == event_type]
        found = read_positions(settings, event_type, of_type)
        for row in of_type:
            record = found.get((row["dlq_partition"], row["dlq_offset"]))
            if record is not None:
                out.append((record, marks[event_type].get(record.position)))
    return out


def _ranges(rows: list[dict[str, Any]]) -> Iterator[tuple[int, int, int]]:
    by_partition: dict[int, list[int]] = {}
    for row in rows:
        by_partition.setdefault(row["dlq_partition"], []).append(row["dlq_offset"])
    for partition, offsets in sorted(by_partition.items()):
        offsets.sort()
        start = prev = offsets[0]
        for offset in offsets[1:]:
            if offset - prev > RANGE_GAP:
                yield partition, start, prev + 1
                start = offset
            prev = offset
        yield partition, start, prev + 1


def headers_for(
    record: DlqRecord, replay_id: uuid.UUID, retry_tier: bool, key: bytes | None
) -> rh.Headers:
    """Main topic: the redrive headers. Retry tier: also what a tier's reader requires
    (group, attempt 2, due now) - a tier copy is the event's second attempt."""
    headers = rh.redrive_headers(record.headers, replay_id=str(replay_id), key=key)
    if retry_tier and record.group:
        now = int(time.time() * 1000)
        headers += [
            (rh.GROUP, record.group.encode()),
            (rh.ATTEMPT, b"2"),
            (rh.FIRST_FAILURE, str(now).encode()),
            (rh.DUE, str(now).encode()),
        ]
    return headers


def run_job(
    settings: Settings,
    engine: Engine,
    job_id: uuid.UUID,
    chosen: Plan,
    *,
    rate: float,
    on_progress: Callable[[int], None] | None = None,
) -> Outcome:
    """Send the plan's records, a chunk at a time: read their bytes, produce, wait for the
    broker's confirmation, mark them replayed, record the progress. Never raises for a
    record: a failed one is counted; a failure of the whole job marks it failed."""
    outcome = Outcome(job_id, dry_run=False)
    retry_tier = chosen.target != main_topic(settings, chosen.event_type)
    producer = replay_producer(settings)
    pacer = Pacer(rate)
    key = replay_signing_key(engine)  # the listener believes signed replays only
    status, error = "finished", None
    try:
        for i in range(0, len(chosen.to_send), pacer.chunk_size):
            rows = chosen.to_send[i : i + pacer.chunk_size]
            records = read_positions(settings, chosen.event_type, rows)
            positions = [(r["dlq_partition"], r["dlq_offset"]) for r in rows]
            outcome.failed += [
                ref_of(r) for r, p in zip(rows, positions, strict=True) if p not in records
            ]
            delivered, failed = send_chunk(
                producer,
                chosen.target,
                [records[p] for p in positions if p in records],
                pacer,
                lambda r: headers_for(r, job_id, retry_tier, key),
            )
            outcome.failed += [r.ref for r in failed]
            _mark_replayed(engine, delivered, job_id)
            outcome.replayed += len(delivered)
            outcome.sent_refs += [r.ref for r in delivered]
            _progress(engine, job_id, outcome)
            if on_progress is not None:
                on_progress(len(rows))
    except (DlqProblem, DlqUsageError) as exc:
        status, error = "failed", str(exc)[:500]
    except Exception as exc:  # the job row must say it failed, not stay "running"
        status, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
    finally:
        _progress(engine, job_id, outcome, status=status, error=error)
    return outcome


def _progress(
    engine: Engine,
    job_id: uuid.UUID,
    outcome: Outcome,
    *,
    status: str | None = None,
    error: str | None = None,
) -> None:
    values: dict[str, Any] = {"count": outcome.replayed, "failed": len(outcome.failed)}
    if status is not None:
        values |= {"status": status, "error": error, "finished_at": datetime.now(UTC)}
    with engine.begin() as conn:
        conn.execute(update(dlq_replays).where(dlq_replays.c.id == job_id).values(**values))
