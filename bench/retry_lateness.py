"""Retry lateness (issue #6 benchmark 3): when a retry runs, minus when it was due, per tier.

    .venv/bin/python -m bench.retry_lateness --events 10000 --spreads 0,20 --rounds 3 [--json]
    .venv/bin/python -m bench.retry_lateness --smoke --json      # CI: 300 events, 1 round

Every event fails on its first attempt (TransientError) and so goes through retry-1s; a share
fails twice (retry-2s too) and a share three times (retry-4s too), then succeeds. The handler
records the wall-clock time of each call, keyed by event id. After the run, a plain consumer
reads the retry tiers back: each record carries its attempt and due time (`qchem-due-ms`,
written by the app when the previous attempt failed). Lateness = the time of that attempt's
handler call - the record's due time, exactly, per record.

Variants (rounds interleaved): the same events produced while the app runs, either all at
once (`burst`, spread 0) or paced over N seconds (`spread-Ns`). With a burst, retries fall
due while the app is still draining the main topic, so lateness also measures throughput;
the spread variants show how it depends on that.

Baseline, in the same process and run: a heap + one thread that sleeps until each due time
(what perfect scheduling achieves in Python on this loaded machine). The handler gives it the
same schedule as the app: on each failure, a timer due at failure time + the tier's delay.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from confluent_kafka import Consumer, Producer, TopicPartition
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from bench import common as c
from common.errors import TransientError
from common.settings import Settings
from ops.app import App
from ops.logging import configure
from retry_topics import headers as rh
from retry_topics.naming import tier_delays_ms
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events
from storage.db import migrate

TARGET_P99_MS = 100.0
TIERS = ("retry-1s", "retry-2s", "retry-4s")


def now_ms() -> float:
    return time.time() * 1000  # the due headers are wall-clock milliseconds


def pct(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (as PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "median_ms": pct(values, 0.5),
        "p99_ms": pct(values, 0.99),
        "max_ms": max(values) if values else None,
    }


class TimerBaseline:
    """One thread, a heap, Condition.wait until the earliest due time: records wake - due."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._cond = threading.Condition()
        self._stop = False
        self.lateness: dict[int, list[float]] = {}  # attempt -> ms
        self._thread = threading.Thread(target=self._run, name="timer-baseline", daemon=True)
        self._thread.start()

    def schedule(self, due: float, attempt: int) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, attempt))
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._heap)

    def _run(self) -> None:
        with self._cond:
            while not self._stop:
                if not self._heap:
                    self._cond.wait()
                    continue
                delta = self._heap[0][0] - now_ms()
                if delta > 0:
                    self._cond.wait(delta / 1000)
                    continue
                due, attempt = heapq.heappop(self._heap)
                self.lateness.setdefault(attempt, []).append(now_ms() - due)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout=5)


class FlakyHandler:
    """Fails an event's first `plan[event_id]` attempts with TransientError, then succeeds."""

    event_type: ClassVar[str] = c.EVENT_TYPE
    dependency: ClassVar[str | None] = None

    def __init__(self, plan: dict[str, int], baseline: TimerBaseline) -> None:
        self.plan = plan
        self.baseline = baseline
        self.calls: dict[str, list[float]] = {}
        self.succeeded = 0
        self._lock = threading.Lock()
        self._delays = tier_delays_ms(3)

    def perform(self, event: Event) -> None:
        at = now_ms()
        with self._lock:
            calls = self.calls.setdefault(event.event_id, [])
            calls.append(at)
            attempt = len(calls)
            fails = attempt <= self.plan.get(event.event_id, 0)
            self.succeeded += attempt == self.plan.get(event.event_id, 0) + 1
        if fails:
            self.baseline.schedule(at + self._delays[attempt - 1], attempt + 1)
            raise TransientError(f"planned failure {attempt}")

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        pass


def make_plan(events: list[Event], twice: float, thrice: float) -> dict[str, int]:
    ids = [e.event_id for e in events]
    random.Random(6).shuffle(ids)  # which events fail more often: spread over keys and time
    n3, n2 = round(len(ids) * thrice), round(len(ids) * twice)
    return {eid: 3 if i < n3 else 2 if i < n3 + n2 else 1 for i, eid in enumerate(ids)}


def produce_paced(bootstrap: str, topic: str, records: list[c.Record], seconds: float) -> float:
    """Produce at an even rate over `seconds`; seconds actually taken."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.perf_counter()
    step = seconds / len(records)
    for i, (key, value) in enumerate(records):
        ahead = started + i * step - time.perf_counter()
        if ahead > 0.002:
            time.sleep(ahead)
        producer.produce(topic, value=value, key=key)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"records left undelivered to {topic}")
    return time.perf_counter() - started


def read_dues(bootstrap: str, topic: str) -> list[tuple[str, int, int]]:
    """(event id, attempt, due ms) of every record of a retry tier, read to its end."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "bench-readback", "enable.auto.commit": False}
    )
    try:
        ends = {}
        for p in range(c.PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        out: list[tuple[str, int, int]] = []
        deadline = time.monotonic() + 60
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end")
            for msg in consumer.consume(500, timeout=0.5):
                part, offset = msg.partition(), msg.offset()
                if msg.error() is not None or part is None or offset is None:
                    continue
                h = rh.as_dict(rh.message_headers(msg))
                event_id = json.loads(msg.value() or b"{}")["event_id"]
                out.append((event_id, int(h[rh.ATTEMPT]), int(h[rh.DUE])))
                if offset + 1 >= ends.get(part, 0):
                    ends.pop(part, None)
        return out
    finally:
        consumer.close()


def run_round(
    spread: float, events: list[Event], data: list[c.Record], args: argparse.Namespace
) -> dict[str, Any]:
    n = len(events)
    plan = make_plan(events, args.twice_share, args.thrice_share)
    settings: Settings = c.bench_settings(args.bootstrap, args.database_url, c.new_prefix())
    names = c.names_of(settings)
    topics = c.prepare_topics(settings)
    baseline = TimerBaseline()
    handler = FlakyHandler(plan, baseline)
    app = App(settings, handlers={c.EVENT_TYPE: handler})
    try:
        app.start()
        for listener in app.listeners:
            if not listener.assigned.wait(timeout=60):
                raise TimeoutError("the app got no partitions within 60 s")
        t0 = now_ms()
        if spread > 0:
            produce_s = produce_paced(args.bootstrap, names.main, data, spread)
        else:
            produce_s = c.produce(args.bootstrap, names.main, data)
        deadline = time.monotonic() + args.timeout
        while handler.succeeded < n or baseline.pending():
            if app.failed.is_set():
                raise RuntimeError("a listener crashed (see stderr)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{handler.succeeded}/{n} succeeded after {args.timeout} s")
            time.sleep(0.05)
        done_s = (now_ms() - t0) / 1000
    finally:
        app.stop()
        baseline.stop()
    try:
        dues = [d for spec in names.retry_tiers for d in read_dues(args.bootstrap, spec.name)]
    finally:
        if not args.keep_topics:
            c.delete_topics(args.bootstrap, topics, [names.group])
        forget_rows(args.database_url, names.group)
    lateness: dict[int, list[float]] = {}
    unmatched = 0
    for event_id, attempt, due in dues:
        calls = handler.calls.get(event_id, [])
        if len(calls) < attempt:
            unmatched += 1  # a retry record whose attempt never ran: reported, not hidden
            continue
        lateness.setdefault(attempt, []).append(calls[attempt - 1] - due)
    first_calls = sorted(calls[0] for calls in handler.calls.values())
    expected = sum(plan.values()) + n
    return {
        "spread_s": spread,
        "produce_s": round(produce_s, 3),
        "seconds_to_all_succeeded": round(done_s, 3),
        # How long the first attempts took to get through: retries falling due before this
        # compete with the main topic's backlog for the same poll loop and workers.
        "first_attempts_s": round((first_calls[-1] - first_calls[0]) / 1000, 3),
        "handler_calls": sum(len(v) for v in handler.calls.values()),
        "expected_calls": expected,
        "retry_records": len(dues),
        "unmatched_retry_records": unmatched,
        "tiers": {TIERS[a - 2]: stats(v) for a, v in sorted(lateness.items())},
        "baseline_tiers": {TIERS[a - 2]: stats(v) for a, v in sorted(baseline.lateness.items())},
    }


def forget_rows(database_url: str, group: str) -> None:
    """The bench's own rows only: the database may be shared with tests and other runs."""
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            for table in ("event_records", "dedup_keys"):
                conn.execute(text(f"DELETE FROM {table} WHERE consumer_group = :g"), {"g": group})
    finally:
        engine.dispose()


def summarise(rounds: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Per tier: the median over rounds of each statistic, and the target met or missed."""
    out: dict[str, Any] = {}
    for tier in TIERS:
        per = [r[key][tier] for r in rounds if tier in r[key]]
        if not per:
            continue
        row: dict[str, Any] = {"count": c.median([p["count"] for p in per])}
        for stat in ("median_ms", "p99_ms", "max_ms"):
            row[stat] = c.median([p[stat] for p in per if p[stat] is not None])
        p99 = row["p99_ms"]
        row["target_met"] = p99 is not None and p99 < TARGET_P99_MS
        row["missed_by_ms"] = None if p99 is None else max(0.0, p99 - TARGET_P99_MS)
        out[tier] = row
    return out


def variant_name(spread: float) -> str:
    return "burst" if spread == 0 else f"spread-{spread:g}s"


def render(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        "qchem-events retry lateness benchmark (actual - due, per retry tier)",
        f"command:  {report['command']}",
        f"machine:  nproc={m['nproc']}, {m['platform']}, loadavg {m['loadavg_at_start']}"
        f" -> {m['loadavg_at_end']}",
        f"software: Python {m['python']}, librdkafka {m['librdkafka']}",
        f"dataset:  {cfg['events']:,} Report events, all fail once; {cfg['twice_share']:.0%} "
        f"twice, {cfg['thrice_share']:.0%} three times; {cfg['rounds']} round(s)",
        f"target:   P99 < {TARGET_P99_MS:.0f} ms",
        "",
    ]
    headers = ["variant", "tier", "count", "median ms", "P99 ms", "max ms", "target",
               "timer P99", "timer max"]  # fmt: skip
    rows = []
    for v in report["variants"]:
        for tier, t in v["tiers"].items():
            b = v["baseline"].get(tier, {})
            verdict = "met" if t["target_met"] else f"missed by {t['missed_by_ms']:.0f} ms"
            rows.append(
                [v["name"], tier, f"{t['count']:.0f}", f"{t['median_ms']:.1f}",
                 f"{t['p99_ms']:.1f}", f"{t['max_ms']:.1f}", verdict,
                 f"{b.get('p99_ms') or 0:.2f}", f"{b.get('max_ms') or 0:.2f}"]
            )  # fmt: skip
    lines.append(c.format_table(headers, rows))
    lines.append("")
    detail = [
        [v["name"], f"{r['produce_s']:.1f}", f"{r['first_attempts_s']:.1f}",
         f"{r['seconds_to_all_succeeded']:.1f}", str(r["handler_calls"]),
         str(r["unmatched_retry_records"])]
        for v in report["variants"]
        for r in v["rounds"]
    ]  # fmt: skip
    lines.append(
        c.format_table(
            ["variant", "produce s", "first attempts s", "all succeeded s", "calls", "unmatched"],
            detail,
        )
    )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.retry_lateness", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--twice-share", type=float, default=0.10, help="share failing twice")
    p.add_argument("--thrice-share", type=float, default=0.05, help="share failing 3 times")
    p.add_argument("--spreads", default="0,20", help="produce over N s each (0 = at once)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="300 events, spreads 0,2, 1 round (CI)")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", c.DEFAULT_BOOTSTRAP)
    )
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", c.DEFAULT_DATABASE_URL))
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per round at most")
    p.add_argument("--keep-topics", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.spreads, args.rounds = 300, "0,2", 1
    args.spreads = [float(s) for s in args.spreads.split(",") if s.strip()]
    if args.events < 1 or args.rounds < 1 or not args.spreads or min(args.spreads) < 0:
        p.error("--events and --rounds must be 1 or more, --spreads 0 or more")
    if not 0 <= args.twice_share + args.thrice_share <= 1:
        p.error("--twice-share + --thrice-share must be within [0, 1]")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure("ERROR")  # every planned failure is a warning line otherwise
    migrate(args.database_url)
    engine: Engine = create_engine(args.database_url, pool_pre_ping=True)
    try:
        machine = c.machine_info(engine, args.database_url, args.bootstrap)
    finally:
        engine.dispose()
    events = sample_events(c.EVENT_TYPE, args.events, keys=1000)
    data = [(e.key.encode(), encode_json(e)) for e in events]
    results: dict[float, list[dict[str, Any]]] = {s: [] for s in args.spreads}
    for round_no in range(1, args.rounds + 1):
        shift = (round_no - 1) % len(args.spreads)
        for spread in args.spreads[shift:] + args.spreads[:shift]:
            result = run_round(spread, events, data, args)
            result["round"] = round_no
            results[spread].append(result)
            t1 = result["tiers"].get("retry-1s", {})
            c.warn(f"round {round_no} {variant_name(spread)}: retry-1s P99 {t1.get('p99_ms')} ms")
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
        "machine": machine,
        "config": {
            "events": args.events,
            "twice_share": args.twice_share,
            "thrice_share": args.thrice_share,
            "spreads_s": args.spreads,
            "rounds": args.rounds,
            "keys": 1000,
            "partitions": c.PARTITIONS,
        },
        "target_p99_ms": TARGET_P99_MS,
        "baseline": "timer thread: heap + Condition.wait until each due time, same process",
        "variants": [
            {
                "name": variant_name(spread),
                "spread_s": spread,
                "tiers": summarise(rounds, "tiers"),
                "baseline": summarise(rounds, "baseline_tiers"),
                "rounds": rounds,
            }
            for spread, rounds in results.items()
        ],
    }
    print(json.dumps(report, indent=2) if args.json else render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
