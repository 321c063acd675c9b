"""Draining a backlog and timing it: the app's run and what FastStream's run shares with it.

A backlog is timed from partition assignment (`t0`) to the last event record written
(`seconds`: max(updated_at) of the group's records, stamped just before their commit); the
time until the committed offsets reach the end (`committed_seconds`, polled every POLL_S, so
coarser and including the commit interval) is measured too, and is what ends the wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench import common as c
from common.settings import Settings
from devtools.harness import running_app
from devtools.kafka import kafka_config

POLL_S = 0.2


class Stalled(TimeoutError):
    """No committed progress for --stall-timeout seconds (seen when the shared broker is
    restarted by someone else mid-round); bench.throughput runs such a round again once."""


class CommitWatcher:
    """Reads a group's committed offsets of one topic without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        extra = {"group.id": group, "enable.auto.commit": False}
        self._consumer = Consumer(kafka_config(bootstrap, extra))
        self._partitions = [TopicPartition(topic, p) for p in range(c.PARTITIONS)]

    def committed(self) -> int:
        """Records committed over all partitions (0 for a partition with no commit yet)."""
        try:
            offsets = self._consumer.committed(self._partitions, timeout=5)
        except KafkaException:
            return -1
        return sum(max(tp.offset, 0) for tp in offsets)

    def close(self) -> None:
        self._consumer.close()


def wait_committed(
    watcher: CommitWatcher,
    n: int,
    t0: float,
    limits: tuple[float, float],
    label: Callable[[], str],
    crashed: Callable[[], bool] = lambda: False,
    poll_s: float = POLL_S,
) -> float:
    """Seconds from `t0` (perf_counter) until `n` records are committed, polled every
    `poll_s`. `limits` = (timeout, stall seconds): Stalled after the stall without progress,
    TimeoutError after the timeout; `label()` begins their message."""
    timeout, stall_s = limits
    progress = (0, t0)  # committed offsets, when they last moved
    while True:
        time.sleep(poll_s)
        if crashed():
            raise RuntimeError("a listener crashed (see stderr)")
        committed, now = watcher.committed(), time.perf_counter()
        if committed >= n:
            return now - t0
        if committed > progress[0]:
            progress = (committed, now)
        elif now - progress[1] > stall_s or now - t0 > timeout:
            error = Stalled if now - t0 <= timeout else TimeoutError
            raise error(
                f"{label()}, {committed} committed after {now - t0:.0f} s, "
                f"none for {now - progress[1]:.0f} s"
            )


def last_record_at(engine: Engine, group: str) -> float | None:
    """Wall-clock time of the group's last event record (stamped just before its commit)."""
    with engine.connect() as conn:
        query = text("SELECT max(updated_at) FROM event_records WHERE consumer_group = :g")
        last = conn.execute(query, {"g": group}).scalar_one()
        return None if last is None else float(last.timestamp())


@dataclass
class AppRun:
    seconds: float  # assignment -> last event record written
    committed_seconds: float  # assignment -> committed offsets at the end
    succeeded: int  # successes by the app's own metric (no TRUNCATE by a test undoes it)
    statuses: dict[str, int] = field(default_factory=dict)
    write_batch_mean: float | None = None  # events per database transaction

    def as_round(self, round_no: int, n: int, produce_seconds: float = 0.0) -> c.RoundResult:
        """This run over a backlog of `n` events as a round of a benchmark's report."""
        return c.RoundResult(
            round=round_no,
            events=n,
            processed=self.succeeded,
            seconds=self.seconds,
            rate=n / self.seconds,
            produce_seconds=produce_seconds,
            committed_seconds=self.committed_seconds,
            committed_rate=n / self.committed_seconds,
            statuses=self.statuses,
            write_batch_mean=self.write_batch_mean,
        )


def warn_if_short(group: str, statuses: dict[str, int], n: int) -> None:
    """Another process emptying the tables (a test's fixture) leaves fewer event records than
    events. The rate still holds: it is timed by the last record written (or by the committed
    offsets when no record is left), and `succeeded` is counted apart from the table."""
    if statuses.get("succeeded") != n:
        c.warn(f"{group}: event records {statuses} for {n} events (truncated by others?)")


def counters() -> tuple[float, float, float]:
    """This process's successes (counted after the DB commit), write transactions, events
    written in them - the app's own Prometheus metrics."""
    labels = {"event_type": c.EVENT_TYPE, "outcome": "success"}
    return (
        REGISTRY.get_sample_value("qchem_events_processed_total", labels) or 0.0,
        REGISTRY.get_sample_value("qchem_db_write_batch_events_count") or 0.0,
        REGISTRY.get_sample_value("qchem_db_write_batch_events_sum") or 0.0,
    )


def run_app_backlog(
    settings: Settings,
    engine: Engine,
    handler: Any,
    n: int,
    limits: tuple[float, float],
    profile: Path | None = None,
) -> AppRun:
    """Run the App with `handler` over a backlog of `n` records already in the main topic
    (timed as the module docstring says); `limits` = (timeout, stall seconds). With `profile`,
    pyinstrument profiles of its threads are written there (bench/profiling.py)."""
    from bench.profiling import ThreadProfiler

    names = c.names_of(settings)
    watcher = CommitWatcher(settings.kafka_bootstrap_servers, names.group, names.main)
    profiler = ThreadProfiler() if profile is not None else None
    if profiler is not None:
        profiler.start()
    before = counters()
    try:
        with running_app(settings, {c.EVENT_TYPE: handler}, partitions=True) as app:
            t0, t0_wall = time.perf_counter(), time.time()

            def label() -> str:
                return f"{names.group}: {c.record_count(engine, names.group)}/{n} records"

            committed_s = wait_committed(watcher, n, t0, limits, label, app.failed.is_set)
            statuses = c.record_statuses(engine, names.group)
            last = last_record_at(engine, names.group)
    finally:
        watcher.close()
        if profiler is not None and profile is not None:
            profiler.write(profile, settings.topic_prefix)
    succeeded, batches, written = (a - b for a, b in zip(counters(), before, strict=True))
    warn_if_short(names.group, statuses, n)
    return AppRun(
        seconds=committed_s if last is None else last - t0_wall,
        committed_seconds=committed_s,
        succeeded=int(succeeded),
        statuses=statuses,
        write_batch_mean=written / batches if batches else None,
    )
