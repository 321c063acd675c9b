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
import random
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Producer
from sqlalchemy.engine import Engine

from bench import common as c
from bench import driver
from common.errors import TransientError
from common.settings import Settings
from devtools.harness import running_app
from devtools.kafka import kafka_config, read_to_end
from devtools.scenarios.dashboard import percentile_cont
from retry_topics import headers as rh
from retry_topics.naming import tier_delays_ms
from schemas.codec import encode_json
from schemas.events import Event
from schemas.samples import sample_events

TARGET_P99_MS = 100.0
TIERS = ("retry-1s", "retry-2s", "retry-4s")


def now_ms() -> float:
    return time.time() * 1000  # the due headers are wall-clock milliseconds


def stats(values: Sequence[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "median_ms": percentile_cont(values, 0.5),
        "p99_ms": percentile_cont(values, 0.99),
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


class FlakyHandler(c.ReportHandler):
    """Fails an event's first `plan[event_id]` attempts with TransientError, then succeeds."""

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


def make_plan(events: list[Event], twice: float, thrice: float) -> dict[str, int]:
    ids = [e.event_id for e in events]
    random.Random(6).shuffle(ids)  # which events fail more often: spread over keys and time
    n3, n2 = round(len(ids) * thrice), round(len(ids) * twice)
    return {eid: 3 if i < n3 else 2 if i < n3 + n2 else 1 for i, eid in enumerate(ids)}


def produce_paced(bootstrap: str, topic: str, records: list[c.Record], seconds: float) -> float:
    """Produce at an even rate over `seconds`; seconds actually taken."""
    producer = Producer(kafka_config(bootstrap, {"linger.ms": 5}))
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
    out: list[tuple[str, int, int]] = []
    for msg in read_to_end(bootstrap, topic, timeout=60):
        h = rh.as_dict(rh.message_headers(msg))
        event_id = json.loads(msg.value() or b"{}")["event_id"]
        out.append((event_id, int(h[rh.ATTEMPT]), int(h[rh.DUE])))
    return out


def drain(
    settings: Settings,
    handler: FlakyHandler,
    baseline: TimerBaseline,
    data: list[c.Record],
    spread: float,
    args: argparse.Namespace,
) -> tuple[float, float]:
    """Run the app, produce the dataset (at once or spread), wait until every event succeeded
    and the timer baseline is done; (seconds from the app's assignment, seconds producing)."""
    n, topic = len(data), c.names_of(settings).main
    try:
        with running_app(settings, {c.EVENT_TYPE: handler}, partitions=True) as app:
            t0 = now_ms()
            if spread > 0:
                produce_s = produce_paced(args.bootstrap, topic, data, spread)
            else:
                produce_s = c.produce(args.bootstrap, topic, data)
            deadline = time.monotonic() + args.timeout
            while handler.succeeded < n or baseline.pending():
                if app.failed.is_set():
                    raise RuntimeError("a listener crashed (see stderr)")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{handler.succeeded}/{n} succeeded after {args.timeout} s")
                time.sleep(0.05)
            return (now_ms() - t0) / 1000, produce_s
    finally:
        baseline.stop()


def run_round(
    spread: float, events: list[Event], data: list[c.Record], args: argparse.Namespace
) -> dict[str, Any]:
    n = len(events)
    plan = make_plan(events, args.twice_share, args.thrice_share)
    baseline = TimerBaseline()
    handler = FlakyHandler(plan, baseline)
    with c.fresh_prefix(args) as prefix:
        names = prefix.names
        prefix.groups.append(names.group)
        try:
            done_s, produce_s = drain(prefix.settings, handler, baseline, data, spread, args)
            dues = [d for spec in names.retry_tiers for d in read_dues(args.bootstrap, spec.name)]
        finally:
            c.forget_rows(args.database_url, [names.group])
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
    cfg = report["config"]
    title = "qchem-events retry lateness benchmark (actual - due, per retry tier)"
    lines = [
        *driver.header(report, title),
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
    smoke = "300 events, spreads 0,2, 1 round (CI)"
    p = driver.parser("bench.retry_lateness", __doc__, smoke=smoke)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument("--twice-share", type=float, default=0.10, help="share failing twice")
    p.add_argument("--thrice-share", type=float, default=0.05, help="share failing 3 times")
    p.add_argument("--spreads", default="0,20", help="produce over N s each (0 = at once)")
    p.add_argument("--rounds", type=int, default=3)
    driver.add_limits(p, 600.0, stall=False)
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.spreads, args.rounds = 300, "0,2", 1
    args.spreads = [float(s) for s in args.spreads.split(",") if s.strip()]
    if args.events < 1 or args.rounds < 1 or not args.spreads or min(args.spreads) < 0:
        p.error("--events and --rounds must be 1 or more, --spreads 0 or more")
    if not 0 <= args.twice_share + args.thrice_share <= 1:
        p.error("--twice-share + --thrice-share must be within [0, 1]")
    return args


def measure(args: argparse.Namespace, _engine: Engine) -> dict[str, Any]:
    events = sample_events(c.EVENT_TYPE, args.events, keys=1000)
    data = [(e.key.encode(), encode_json(e)) for e in events]
    results: dict[float, list[dict[str, Any]]] = {s: [] for s in args.spreads}
    for round_no, spread in driver.rounds(args.spreads, args.rounds):
        result = run_round(spread, events, data, args)
        result["round"] = round_no
        results[spread].append(result)
        t1 = result["tiers"].get("retry-1s", {})
        c.warn(f"round {round_no} {variant_name(spread)}: retry-1s P99 {t1.get('p99_ms')} ms")
    return {
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


def main(argv: list[str] | None = None) -> int:
    # Every planned failure is a warning line otherwise.
    return driver.run(parse_args(argv), measure, render, log_level="ERROR")


if __name__ == "__main__":
    sys.exit(main())
