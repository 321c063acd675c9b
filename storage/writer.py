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
of the commit is shared. If the transaction itself fails (the database went away) every
request of the batch gets the error and nothing of it was applied.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog
from sqlalchemy import and_, delete, or_, select, tuple_
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from storage.models import dedup_keys, event_records

log = structlog.get_logger(__name__)


class _EffectFailed(Exception):
    """A handler effect failed in an optimistic (savepoint-free) batch."""


def _database_gone(exc: BaseException) -> bool:
    gone = sa_exc.TimeoutError | sa_exc.InterfaceError | sa_exc.PendingRollbackError
    return isinstance(exc, gone) or (
        isinstance(exc, sa_exc.DBAPIError)
        and (exc.connection_invalidated or isinstance(exc, sa_exc.OperationalError))
    )


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    DLQ = "dlq"
    INVALID = "invalid"
    DUPLICATE = "duplicate"


class WriteResult(StrEnum):
    APPLIED = "applied"  # the effect was applied now
    DUPLICATE = "duplicate"  # the effect had been applied before: nothing done
    RECORDED = "recorded"  # an outcome without an effect (retrying, dlq, invalid)


OriginKey = tuple[str, str, int, int]  # consumer group, origin topic, partition, offset


@dataclass(slots=True)
class WriteRequest:
    group: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    event_type: str
    status: Status
    on_done: Callable[[WriteResult | BaseException], None]
    event_id: str | None = None
    event_key: str | None = None
    attempts: int = 1
    last_error: str | None = None
    processing_ms: int | None = None
    # The handler's database effect; only for SUCCEEDED, which also writes the dedup row.
    apply: Callable[[Connection], None] | None = None
    result: WriteResult | BaseException | None = field(default=None, init=False)

    @property
    def origin_key(self) -> OriginKey:
        return (self.group, self.origin_topic, self.origin_partition, self.origin_offset)


class BatchWriter:
    def __init__(
        self,
        engine: Engine,
        *,
        writers: int = 2,
        batch_max: int = 500,
        name: str = "writer",
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._engine = engine
        self._queue: queue.SimpleQueue[WriteRequest | None] = queue.SimpleQueue()
        self._batch_max = batch_max
        self._on_batch = on_batch
        self._threads = [
            threading.Thread(target=self._loop, name=f"{name}-{i}", daemon=True)
            for i in range(writers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, request: WriteRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def already_processed(
        self, group: str, topic: str, partition: int, offset: int, event_id: str
    ) -> bool:
        """Read-only dedup check before an external side effect (an email must not be sent
        again for an event whose effect is already committed)."""
        query = (
            select(dedup_keys.c.origin_offset)
            .where(
                dedup_keys.c.consumer_group == group,
                or_(
                    and_(
                        dedup_keys.c.origin_topic == topic,
                        dedup_keys.c.origin_partition == partition,
                        dedup_keys.c.origin_offset == offset,
                    ),
                    dedup_keys.c.event_id == event_id,
                ),
            )
            .limit(1)
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    # -- writer threads ------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # let the loop finish this batch, then stop
                    break
                batch.append(nxt)
            self._write(batch)

    def _write(self, batch: list[WriteRequest]) -> None:
        started = datetime.now(UTC)
        try:
            self._transaction(batch)
        except Exception as exc:
            if len(batch) > 1 and not _database_gone(exc):
                # One bad row must not fail its neighbours: write them one by one.
                for request in batch:
                    try:
                        self._transaction([request])
                    except Exception as single_exc:
                        request.result = single_exc
        if self._on_batch is not None:
            self._on_batch(len(batch), (datetime.now(UTC) - started).total_seconds())
        for request in batch:
            assert request.result is not None
            try:
                request.on_done(request.result)
            except Exception:  # a callback bug must not kill the writer
                log.exception("write_callback_failed", origin=request.origin_key)

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
        for request in successes:
            if id(request) not in fresh:
                request.result = WriteResult.DUPLICATE
                continue
            if request.apply is None:
                request.result = WriteResult.APPLIED
                continue
            if not savepoints:
                try:
                    request.apply(conn)
                except Exception as exc:
                    raise _EffectFailed from exc  # roll back all; retry with savepoints
                request.result = WriteResult.APPLIED
                continue
            savepoint = conn.begin_nested()
            try:
                request.apply(conn)
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

    @staticmethod
    def _insert_dedup_rows(conn: Connection, requests: list[WriteRequest]) -> set[int]:
        """Insert dedup rows; ids of the requests whose row is new (effect to apply)."""
        if not requests:
            return set()
        rows = [
            {
                "consumer_group": r.group,
                "origin_topic": r.origin_topic,
                "origin_partition": r.origin_partition,
                "origin_offset": r.origin_offset,
                "event_id": r.event_id,
            }
            for r in requests
        ]
        statement = (
            insert(dedup_keys)
            .on_conflict_do_nothing()
            .returning(
                dedup_keys.c.consumer_group,
                dedup_keys.c.origin_topic,
                dedup_keys.c.origin_partition,
                dedup_keys.c.origin_offset,
            )
        )
        # executemany + RETURNING: SQLAlchemy batches it into multi-row VALUES
        # ("insertmanyvalues"), one round trip per 1000 rows.
        inserted = {tuple(row) for row in conn.execute(statement, rows)}
        fresh: set[int] = set()
        for request in requests:  # the first request of a key wins; later copies are dups
            if request.origin_key in inserted:
                inserted.discard(request.origin_key)
                fresh.add(id(request))
        return fresh

    @staticmethod
    def _upsert_event_records(conn: Connection, batch: list[WriteRequest]) -> None:
        latest: dict[OriginKey, dict[str, Any]] = {}
        duplicates: dict[OriginKey, dict[str, Any]] = {}
        now = datetime.now(UTC)
        for r in batch:
            if isinstance(r.result, BaseException):
                continue  # rolled back: its outcome is decided (and recorded) later
            status = Status.DUPLICATE if r.result is WriteResult.DUPLICATE else r.status
            row = {
                "consumer_group": r.group,
                "origin_topic": r.origin_topic,
                "origin_partition": r.origin_partition,
                "origin_offset": r.origin_offset,
                "event_type": r.event_type,
                "event_id": r.event_id,
                "event_key": r.event_key[:500] if r.event_key else None,
                "status": status.value,
                "attempts": r.attempts,
                "last_error": r.last_error[:2000] if r.last_error else None,
                "processing_ms": r.processing_ms,
                "updated_at": now,
            }
            # A duplicate must not overwrite the record of the delivery that applied it.
            (duplicates if status is Status.DUPLICATE else latest)[r.origin_key] = row
        if latest:
            # executemany: one cached statement, batched into multi-row VALUES by SQLAlchemy.
            stmt = insert(event_records)
            stmt = stmt.on_conflict_do_update(
                index_elements=[
                    event_records.c.consumer_group,
                    event_records.c.origin_topic,
                    event_records.c.origin_partition,
                    event_records.c.origin_offset,
                ],
                set_={
                    "status": stmt.excluded.status,
                    "attempts": stmt.excluded.attempts,
                    "last_error": stmt.excluded.last_error,
                    "processing_ms": stmt.excluded.processing_ms,
                    "event_id": stmt.excluded.event_id,
                    "updated_at": stmt.excluded.updated_at,
                },
            )
            # RETURNING makes SQLAlchemy send it as multi-row VALUES ("insertmanyvalues");
            # without it psycopg2's executemany is one round trip per row.
            conn.execute(stmt.returning(event_records.c.origin_offset), list(latest.values()))
        pure_duplicates = [row for key, row in duplicates.items() if key not in latest]
        if pure_duplicates:
            conn.execute(
                insert(event_records)
                .on_conflict_do_nothing()
                .returning(event_records.c.origin_offset),
                pure_duplicates,
            )
