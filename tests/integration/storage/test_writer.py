"""The batch writer against the real PostgreSQL: per-lane order, and holding through a lost
connection (storage/writer.py)."""

from __future__ import annotations

import random
import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection, Engine

from retry_topics.policy import FailureKind, classify, database_down, hold_delay_s
from storage.models import dedup_keys, event_records
from storage.requests import Status, WriteRequest, WriteResult
from storage.writer import BatchWriter

# What the runtime gives every writer (consumers/runtime.py): the policy's rules.
POLICY: dict[str, Any] = {
    "is_database_down": database_down,
    "hold_delay_s": lambda held: hold_delay_s(held, random.Random()),
}

pytestmark = pytest.mark.integration


class Results:
    """Collects every request's result; `wait` until all have one."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.values: list[WriteResult | BaseException] = []
        self._cond = threading.Condition()

    def __call__(self, result: WriteResult | BaseException) -> None:
        with self._cond:
            self.values.append(result)
            self._cond.notify_all()

    def wait(self, timeout: float = 30) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.values) >= self.expected, timeout)


def request(group: str, offset: int, apply: Any, on_done: Results) -> WriteRequest:
    return WriteRequest(
        group=group,
        origin_topic="t",
        origin_partition=0,
        origin_offset=offset,
        event_type="Report",
        status=Status.SUCCEEDED,
        event_id=str(uuid.uuid4()),
        apply=None if apply is None else (lambda conn, _item, _performed: apply(conn)),
        on_done=on_done,
    )


def count(engine: Engine, table: Any, group: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count()).select_from(table).where(table.c.consumer_group == group)
            ).scalar_one()
        )


def test_the_writes_of_one_lane_are_applied_in_submission_order(db_engine: Engine) -> None:
    lanes, per_lane = ("a", "b", "c", "d", "e"), 80
    applied: list[tuple[str, int]] = []
    results = Results(len(lanes) * per_lane)
    writer = BatchWriter(db_engine, writers=3, batch_max=7, **POLICY)
    try:
        offset = 0
        for seq in range(per_lane):
            for lane in lanes:

                def apply(_conn: Connection, lane: str = lane, seq: int = seq) -> None:
                    applied.append((lane, seq))

                writer.submit(request("g-order", offset, apply, results), lane)
                offset += 1
        results.wait()
    finally:
        writer.close()
    assert all(r is WriteResult.APPLIED for r in results.values), set(map(str, results.values))
    for lane in lanes:
        assert [s for name, s in applied if name == lane] == list(range(per_lane)), lane
    assert count(db_engine, event_records, "g-order") == len(lanes) * per_lane


def test_a_lost_connection_holds_the_writes_and_applies_them_once_in_order(
    db_engine: Engine,
) -> None:
    total = 12
    applied: list[int] = []
    cuts: list[int] = []
    signals: list[tuple[bool, int]] = []
    results = Results(total)
    started = threading.Event()

    def make_apply(seq: int) -> Any:
        def apply(conn: Connection) -> None:
            if seq == 0:
                started.wait(5)  # so that the others queue up and form the next batch
            if seq == 5 and len(cuts) < 2:
                # What a PostgreSQL restart does to the connection in use - twice, so that
                # the writer's own retry with savepoints fails too and the batch is held.
                cuts.append(seq)
                conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            applied.append(seq)

        return apply

    writer = BatchWriter(
        db_engine,
        writers=1,
        batch_max=100,
        is_database_down=lambda exc: classify(exc) is FailureKind.DATABASE_DOWN,
        hold_delay_s=lambda _held: 0.05,
        on_database=lambda down, held: signals.append((down, held)),
    )
    try:
        for seq in range(total):
            writer.submit(request("g-cut", seq, make_apply(seq), results), "one-key")
        started.set()
        results.wait()
    finally:
        writer.close()

    assert len(cuts) == 2
    assert all(r is WriteResult.APPLIED for r in results.values), set(map(str, results.values))
    assert signals and signals[0][0] is True and signals[0][1] >= 1, signals
    assert signals[-1] == (False, 0), signals
    # Each effect was committed once (the rolled-back attempt left nothing) ...
    assert count(db_engine, dedup_keys, "g-cut") == total
    assert count(db_engine, event_records, "g-cut") == total
    # ... and the attempts that committed ran in submission order.
    last_run = {seq: i for i, seq in enumerate(applied)}
    assert sorted(last_run, key=last_run.__getitem__) == list(range(total))


def test_a_second_copy_in_the_same_batch_is_not_a_duplicate_of_a_failed_first_copy(
    db_engine: Engine,
) -> None:
    """Two records with one event id in one batch: the first copy's effect fails, so the
    second must be applied, not called a duplicate of an effect that never happened. A third
    copy, after the second succeeded, is the duplicate."""
    event_id = str(uuid.uuid4())
    results = Results(3)
    gate = threading.Event()
    applied: list[int] = []

    def blocker(_conn: Connection) -> None:
        gate.wait(5)  # hold the writer so that the three copies queue up: one batch

    def failing(_conn: Connection) -> None:
        raise ValueError("value too long for its column")

    def succeeding(_conn: Connection) -> None:
        applied.append(1)

    writer = BatchWriter(db_engine, writers=1, batch_max=100, **POLICY)
    try:
        writer.submit(request("g-blocker", 99, blocker, Results(1)), "one-key")
        copies = [failing, succeeding, succeeding]
        for offset, apply in enumerate(copies):
            req = request("g-copies", offset, apply, results)
            req.event_id = event_id
            writer.submit(req, "one-key")
        gate.set()
        results.wait()
    finally:
        writer.close()
    first, second, third = results.values
    assert isinstance(first, ValueError)
    assert second is WriteResult.APPLIED, second
    assert third is WriteResult.DUPLICATE, third
    assert applied == [1]
    assert count(db_engine, dedup_keys, "g-copies") == 1


def test_requests_sharing_on_done_all_complete_together_in_order(db_engine: Engine) -> None:
    """The pipeline's batched completions: one call per transaction with every request that
    names the same `on_done_all`, in submission order; the others get their own `on_done`."""
    calls: list[list[tuple[int, WriteResult | BaseException | None]]] = []
    singles = Results(1)
    done = threading.Event()

    def on_done_all(requests: list[WriteRequest]) -> None:
        calls.append([(r.context, r.result) for r in requests])
        if sum(len(c) for c in calls) == 5:
            done.set()

    def no_effect(_conn: Connection) -> None:
        pass

    writer = BatchWriter(db_engine, writers=1, batch_max=100, **POLICY)
    try:
        batch = [request("g-all", offset, no_effect, Results(0)) for offset in range(5)]
        for offset, r in enumerate(batch):
            r.on_done_all, r.context = on_done_all, offset
        single = request("g-all", 99, no_effect, singles)
        writer.submit(single, "lane")
        for r in batch:
            writer.submit(r, "lane")
        singles.wait()
        assert done.wait(30)
    finally:
        writer.close()
    completed = [item for call in calls for item in call]
    assert completed == [(offset, WriteResult.APPLIED) for offset in range(5)]
    assert len(calls) <= 2  # one call per transaction (the single may have gone first alone)
    assert singles.values == [WriteResult.APPLIED]
