"""Exactly-once database effects with group commit.

A handler's effect, the event's dedup row and its event record must commit together (all or
none), yet one transaction per event caps throughput at one fsync per event. So writes go
through a queue drained by a few writer threads; each takes whatever is waiting (up to
`WRITE_BATCH_MAX`) and writes it in ONE transaction:

1. dedup rows of the successful events: one multi-row INSERT ... ON CONFLICT DO NOTHING
   RETURNING - the rows not returned are duplicates (same origin, or same event id) and
   their effects are skipped;
2. each fresh event's handler effect - optimistically all in a row; if one fails (a lock
   timeout, say) the transaction is rolled back and written again with a SAVEPOINT per
   event, so the failing one rolls back only itself (its dedup row deleted with it);
3. the event records of the whole batch: one multi-row upsert;
4. COMMIT, then every request's callback with its result.

Under low load a batch is one event (no added latency); under load batches grow and the cost
of the commit is shared.

Order: each writer thread has its own queue and a request goes to the queue of its lane (the
event's key), so the writes of one key are applied in the order they were submitted, one
batch after another, whatever the other threads do. That is what lets the pipeline free a
key's lane as soon as its write is *submitted* rather than committed.

The database gone: if the transaction fails because the database is unavailable (per the
injected `is_database_down`: retry_topics/policy.py's `database_down`, given by the runtime
that assembles the writer - storage sits below the policy), nothing of it was applied and
the writer holds the batch: it writes the same requests again, in the same order, after a
capped jittered backoff, until the database answers (or the writer is closed, when the
requests get the error and stay uncommitted - redelivered after a restart). Holding in the
writer, not in the pipeline, keeps the per-key order through an outage and never re-runs a
handler's side effect.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import delete, tuple_
from sqlalchemy.engine import Connection, Engine

from storage import bulk, claims, dlq_index
from storage.models import dedup_keys
from storage.requests import OriginKey, Status, WriteRequest, WriteResult

log = structlog.get_logger(__name__)


class _EffectFailed(Exception):
    """A handler effect failed in an optimistic (savepoint-free) batch."""


# Told when the database becomes unavailable (True, requests held) and available again
# (retry_topics/failure.py's `Hold.writes_held`).
DatabaseListener = Callable[[bool, int], None]


class BatchWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        writers: int = 2,
        batch_max: int = 500,
        name: str = "writer",
        on_batch: Callable[[int, float], None] | None = None,
        is_database_down: Callable[[BaseException], bool],
        hold_delay_s: Callable[[int], float],
        on_database: DatabaseListener | None = None,
    ) -> None:
        self._engine = engine
        self._queues: list[queue.SimpleQueue[WriteRequest | None]] = [
            queue.SimpleQueue() for _ in range(writers)
        ]
        self._next_queue = itertools.count()
        self._batch_max = batch_max
        self._on_batch = on_batch
        self._is_database_down = is_database_down
        # The backoff of every hold in place (retry_topics/failure.py's `Hold.delay_s`).
        self._hold_delay_s = hold_delay_s
        self._on_database = on_database
        self._closing = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(q,), name=f"{name}-{i}", daemon=True)
            for i, q in enumerate(self._queues)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: WriteRequest, lane: Hashable | None = None) -> None:
        """Queue a write; requests of one `lane` are applied in submission order."""
        index = hash(lane) if lane is not None else next(self._next_queue)
        self._queues[index % len(self._queues)].put(request)

    def close(self) -> None:
        self._closing.set()  # a batch held for the database gives up (stays uncommitted)
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def claim_effect(
        self, group: str, topic: str, partition: int, offset: int, event_id: str
    ) -> claims.Claim:
        """Before an outside effect: may this copy perform it (storage/claims.py)?"""
        return claims.claim(self._engine, group, topic, partition, offset, event_id)

    def release_effect(
        self, group: str, topic: str, partition: int, offset: int, event_id: str
    ) -> None:
        """The effect failed: give its claim up for the retry or another copy."""
        claims.release(self._engine, group, topic, partition, offset, event_id)

    # -- writer threads ------------------------------------------------------------------

    def _loop(self, source: queue.SimpleQueue[WriteRequest | None]) -> None:
        while True:
            first = source.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    nxt = source.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    source.put(None)  # let the loop finish this batch, then stop
                    break
                batch.append(nxt)
            for part in _without_repeats(batch):
                self._write(part)

    def _write(self, batch: list[WriteRequest]) -> None:
        started = datetime.now(UTC)
        self._write_once(batch)
        self._hold_while_unavailable(batch)
        if self._on_batch is not None:
            self._on_batch(len(batch), (datetime.now(UTC) - started).total_seconds())
        together: dict[Callable[[list[WriteRequest]], None], list[WriteRequest]] = {}
        for request in batch:
            assert request.result is not None
            if request.on_done_all is not None:
                together.setdefault(request.on_done_all, []).append(request)
                continue
            try:
                assert request.on_done is not None  # __post_init__
                request.on_done(request.result)
            except Exception:  # a callback bug must not kill the writer
                log.exception("write_callback_failed", origin=request.origin_key)
        for on_done_all, requests in together.items():
            try:
                on_done_all(requests)
            except Exception:
                log.exception("write_callback_failed", origin=requests[0].origin_key)

    def _write_once(self, batch: list[WriteRequest]) -> None:
        try:
            self._transaction(batch)
        except Exception as exc:
            if len(batch) > 1 and not self._is_database_down(exc):
                # One bad row must not fail its neighbours: write them one by one.
                for request in batch:
                    try:
                        self._transaction([request])
                    except Exception as single_exc:
                        request.result = single_exc

    def _hold_while_unavailable(self, batch: list[WriteRequest]) -> None:
        """Hold the requests that failed because the database is unavailable and write them
        again, in the same order, after the injected backoff, until it answers or the writer
        closes. On this thread: while it waits, no later write of theirs can overtake them."""
        held = 0
        pending = self._unavailable(batch)
        while pending and not self._closing.is_set():
            held += 1
            if self._on_database is not None:
                self._on_database(True, len(pending))
            if self._closing.wait(self._hold_delay_s(held)):
                break
            self._write_once(pending)
            pending = self._unavailable(pending)
        if held and not pending and self._on_database is not None:
            self._on_database(False, 0)

    def _unavailable(self, batch: list[WriteRequest]) -> list[WriteRequest]:
        """The requests that failed only because the database was unavailable."""
        return [
            r
            for r in batch
            if isinstance(r.result, BaseException) and self._is_database_down(r.result)
        ]

    def _transaction(self, batch: list[WriteRequest]) -> None:
        """Optimistically without savepoints (two round trips per event saved); if any
        effect fails, the whole transaction is rolled back and written again with a
        savepoint per event, so only the failing events fail."""
        try:
            self._attempt(batch, savepoints=False)
        except _EffectFailed:
            self._attempt(batch, savepoints=True)

    def _attempt(self, batch: list[WriteRequest], *, savepoints: bool) -> None:
        for request in batch:
            request.result = None
        try:
            with self._engine.begin() as conn:
                self._write_in_transaction(conn, batch, savepoints)
        except _EffectFailed:
            raise
        except BaseException as exc:  # the transaction is gone: nothing of the batch applied
            for request in batch:
                request.result = exc
            raise

    def _write_in_transaction(
        self, conn: Connection, batch: list[WriteRequest], savepoints: bool
    ) -> None:
        successes = [r for r in batch if r.status is Status.SUCCEEDED]
        fresh = self._insert_dedup_rows(conn, successes)
        if not savepoints:
            self._apply_sets(conn, [r for r in successes if id(r) in fresh])
        for request in successes:
            if id(request) not in fresh:
                request.result = WriteResult.DUPLICATE
                continue
            if request.apply is None or request.result is not None:
                request.result = WriteResult.APPLIED
                continue
            if not savepoints:
                try:
                    request.apply(conn, request.item, request.performed)
                except Exception as exc:
                    raise _EffectFailed from exc  # roll back all; retry with savepoints
                request.result = WriteResult.APPLIED
                continue
            savepoint = conn.begin_nested()
            try:
                request.apply(conn, request.item, request.performed)
                savepoint.commit()
                request.result = WriteResult.APPLIED
            except Exception as exc:
                try:
                    savepoint.rollback()
                except Exception:
                    # The connection itself is gone: the whole batch fails, with the real
                    # cause (a connection error, "database down"), not the rollback's own
                    # PendingRollbackError, which would read as a permanent failure.
                    raise exc from None
                conn.execute(
                    delete(dedup_keys).where(
                        tuple_(
                            dedup_keys.c.consumer_group,
                            dedup_keys.c.origin_topic,
                            dedup_keys.c.origin_partition,
                            dedup_keys.c.origin_offset,
                        )
                        == request.origin_key
                    )
                )
                request.result = exc
        for request in batch:
            if request.result is None:
                request.result = WriteResult.RECORDED
        self._upsert_event_records(conn, batch)
        dlq_index.insert_entries(conn, [r.dlq_entry for r in batch if r.dlq_entry is not None])

    @staticmethod
    def _apply_sets(conn: Connection, fresh: list[WriteRequest]) -> None:
        """The set-based effects: one `apply_batch` call per handler for its fresh requests,
        in submission order. A failure rolls the transaction back and the batch is written
        again with a savepoint per event (`_transaction`), one `apply` at a time."""
        sets: dict[Callable[[Connection, list[Any]], None], list[WriteRequest]] = {}
        for request in fresh:
            if request.apply_batch is not None:
                sets.setdefault(request.apply_batch, []).append(request)
        for apply_batch, requests in sets.items():
            try:
                apply_batch(conn, [r.item for r in requests])
            except Exception as exc:
                raise _EffectFailed from exc
            for request in requests:
                request.result = WriteResult.APPLIED

    @staticmethod
    def _insert_dedup_rows(conn: Connection, requests: list[WriteRequest]) -> set[int]:
        """Insert dedup rows; ids of the requests whose row is new (effect to apply)."""
        if not requests:
            return set()
        rows = [
            (r.group, r.origin_topic, r.origin_partition, r.origin_offset, r.event_id)
            for r in requests
        ]
        returned = bulk.values(conn, bulk.INSERT_DEDUP_ROWS, rows, fetch=True)
        inserted = {tuple(row) for row in returned}
        fresh: set[int] = set()
        for request in requests:  # the first request of a key wins; later copies are dups
            if request.origin_key in inserted:
                inserted.discard(request.origin_key)
                fresh.add(id(request))
        return fresh

    @staticmethod
    def _upsert_event_records(conn: Connection, batch: list[WriteRequest]) -> None:
        latest: dict[OriginKey, tuple[Any, ...]] = {}
        duplicates: dict[OriginKey, tuple[Any, ...]] = {}
        now = datetime.now(UTC)
        for r in batch:
            if isinstance(r.result, BaseException):
                continue  # rolled back: its outcome is decided (and recorded) later
            status = Status.DUPLICATE if r.result is WriteResult.DUPLICATE else r.status
            row = (
                r.group,
                r.origin_topic,
                r.origin_partition,
                r.origin_offset,
                r.event_type,
                r.event_id,
                r.event_key[:500] if r.event_key else None,
                status.value,
                r.attempts,
                r.last_error[:2000] if r.last_error else None,
                r.processing_ms,
            )
            # A duplicate must not overwrite the record of the delivery that applied it.
            (duplicates if status is Status.DUPLICATE else latest)[r.origin_key] = row
        if latest:
            bulk.values(conn, bulk.UPSERT_EVENT_RECORDS, list(latest.values()), shared=(now, now))
        pure_duplicates = [row for key, row in duplicates.items() if key not in latest]
        if pure_duplicates:
            bulk.values(conn, bulk.INSERT_DUPLICATE_RECORDS, pure_duplicates, shared=(now, now))


def _without_repeats(batch: list[WriteRequest]) -> list[list[WriteRequest]]:
    """Consecutive parts of `batch`, none holding two successes with the same dedup key.

    Within one transaction, a second copy of an event (same event id, or same origin) is
    judged against the first copy's dedup row - inserted in the same statement - even when
    the first copy's effect then fails and its row is removed again: the second would be
    called a duplicate of an effect that was never applied. Written in separate transactions,
    in order, the second copy is judged against what the first one left committed."""
    parts: list[list[WriteRequest]] = [[]]
    ids: set[str | None] = set()
    origins: set[OriginKey] = set()
    for request in batch:
        if request.status is Status.SUCCEEDED:
            if request.event_id in ids or request.origin_key in origins:
                parts.append([])
                ids.clear()
                origins.clear()
            ids.add(request.event_id)
            origins.add(request.origin_key)
        parts[-1].append(request)
    return parts
