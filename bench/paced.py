"""bench.overhead's child process: a paced producer and, for the app, the outcome watcher.

In a child process (spawned, never forked: the parent runs librdkafka) so that producing at a
steady rate does not share the consumer's GIL. Times are time.time() in both processes: the
same clock.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import threading
import time
import traceback
from typing import Any, cast

from confluent_kafka import Producer
from sqlalchemy import create_engine, text

from bench import common as c
from devtools.kafka import kafka_config

IdRecord = tuple[str, bytes, bytes]  # event id, key, value


def paced_produce(
    bootstrap: str, topic: str, records: list[IdRecord], rate: float
) -> tuple[dict[str, float], float]:
    """Produce evenly spread at `rate`; produce() call times by event id, and the worst lag
    of a produce() behind its schedule (the pacer's own honesty check)."""
    producer = Producer(kafka_config(bootstrap, {"linger.ms": 1, "enable.idempotence": True}))
    produced: dict[str, float] = {}
    worst = 0.0
    start = time.time() + 0.05
    for i, (event_id, key, value) in enumerate(records):
        due = start + i / rate
        now = time.time()
        if due > now:
            time.sleep(due - now)
            now = time.time()
        worst = max(worst, now - due)
        produced[event_id] = now
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("records left undelivered after 60 s")
    return produced, worst


def watch_outcomes(
    database_url: str, group: str, topic: str, n: int, poll_s: float, stall_s: float
) -> tuple[dict[str, float], float]:
    """Event ids -> time their record became visible (midpoint of the two queries around
    it); and the mean poll period. Walks the primary key per partition from the lowest
    offset not yet seen, so each query reads only the recent rows."""
    engine = create_engine(database_url, isolation_level="AUTOCOMMIT")
    union = " UNION ALL ".join(
        f"SELECT event_id, origin_partition, origin_offset FROM event_records "
        f"WHERE consumer_group = :g AND origin_topic = :t AND origin_partition = {p} "
        f"AND origin_offset >= :lo{p}"
        for p in range(c.PARTITIONS)
    )
    query = text(union)
    seen: dict[str, float] = {}
    offsets: list[set[int]] = [set() for _ in range(c.PARTITIONS)]
    low = [0] * c.PARTITIONS
    previous = time.time()
    started, polls, progress = previous, 0, previous
    with engine.connect() as conn:
        while len(seen) < n:
            before = time.time()
            params: dict[str, Any] = {"g": group, "t": topic}
            params.update({f"lo{p}": low[p] for p in range(c.PARTITIONS)})
            rows = conn.execute(query, params).all()
            polls += 1
            for event_id, partition, offset in rows:
                if offset not in offsets[partition]:
                    offsets[partition].add(offset)
                    seen[event_id] = (previous + before) / 2
                    progress = before
            for p in range(c.PARTITIONS):
                while low[p] in offsets[p]:
                    offsets[p].discard(low[p])
                    low[p] += 1
            previous = before
            if before - progress > stall_s:
                raise TimeoutError(f"{len(seen)}/{n} outcomes seen, none for {stall_s:.0f} s")
            time.sleep(poll_s)
    engine.dispose()
    return seen, (time.time() - started) / max(polls, 1)


def drive(conn: multiprocessing.connection.Connection, job: dict[str, Any]) -> None:
    """Child process entry point: produce (and watch), send the result back."""
    try:
        result: dict[str, Any] = {}
        watcher: threading.Thread | None = None
        if job.get("watch"):
            w = job["watch"]

            def watch() -> None:
                try:
                    result["done"], result["poll_period_s"] = watch_outcomes(**w)
                except BaseException:
                    result["error"] = traceback.format_exc()

            watcher = threading.Thread(target=watch, name="outcome-watcher")
            watcher.start()
        result["produced"], result["pacer_worst_lag_s"] = paced_produce(
            job["bootstrap"], job["topic"], job["records"], job["rate"]
        )
        if watcher is not None:
            watcher.join()
        conn.send(result)
    except BaseException:
        conn.send({"error": traceback.format_exc()})


def start_driver(job: dict[str, Any]) -> tuple[Any, multiprocessing.connection.Connection]:
    ctx = multiprocessing.get_context("spawn")  # never fork a process running librdkafka
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=drive, args=(child, job), name="paced-producer", daemon=True)
    process.start()
    child.close()
    return process, parent


def finish_driver(
    process: Any, pipe: multiprocessing.connection.Connection, timeout: float
) -> dict[str, Any]:
    if not pipe.poll(timeout):
        process.kill()
        raise TimeoutError(f"the paced producer sent nothing within {timeout:.0f} s")
    result = cast(dict[str, Any], pipe.recv())
    process.join(timeout=30)
    if "error" in result:
        raise RuntimeError(f"paced producer failed:\n{result['error']}")
    return result
