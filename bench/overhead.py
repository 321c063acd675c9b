"""Framework overhead: latency per event at half of the app's maximum throughput, in one run.

    .venv/bin/python -m bench.overhead --rounds 3 [--seconds 20] [--json]
    .venv/bin/python -m bench.overhead --smoke --json          # CI: a few seconds, 1 round

1. Maximum throughput: the app (no-op Report handler, the environment's settings) over a
   backlog of --burst-events, timed from partition assignment to its last event record.
2. The rate under test is half of that (or --rate). A paced producer in a child process (so
   it does not share the consumer's GIL) produces events evenly spread at that rate for
   --seconds; the consumer under test runs in this process.
3. Latency of an event = the moment its outcome is done minus the moment `produce()` was
   called for it (time.time() in both processes: the same clock):
   * raw-poll   (the baseline) - Consumer.poll() one record at a time + schemas.codec.decode;
                  done = right after decode. The lowest latency confluent-kafka offers.
   * raw-batch  - Consumer.consume(500, timeout=0.1) + decode: the batch call the app's poll
                  loop uses, which waits for 500 records OR the timeout - for reference.
   * app        - ops.app.App with a no-op handler; done = its event record is COMMITTED
                  (visible to another connection). The child process polls event_records
                  every --db-poll-ms; a record first seen by the query started at t_k and
                  absent from the one started at t_k-1 committed between the two: its time is
                  taken as their midpoint (error at most half the poll period, reported). A
                  time taken inside the handler's `apply` would precede the commit; the
                  committed Kafka offset lags the outcome by up to COMMIT_INTERVAL_S.
   Events produced in the first --warmup seconds are left out (the first fetch).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any, cast

from confluent_kafka import Consumer, KafkaException
from sqlalchemy.engine import Engine

from bench import common as c
from bench import driver
from bench.backlog import run_app_backlog
from bench.paced import IdRecord, finish_driver, start_driver
from devtools.harness import running_app
from devtools.kafka import kafka_config
from schemas.codec import decode, encode_json
from schemas.events import Event
from schemas.samples import sample_events

BASELINE = "raw-poll"
VARIANTS = ("raw-poll", "raw-batch", "app")


class NoopHandler(c.ReportHandler):
    """Does nothing, on the worker path (a `perform` of its own, as bench.memory's child)."""

    def perform(self, event: Event) -> None:
        return None


def dataset(count: int) -> list[IdRecord]:
    return [
        (e.event_id, e.key.encode(), encode_json(e))
        for e in sample_events(c.EVENT_TYPE, count, keys=1000)
    ]


# -- the variants (this process) --------------------------------------------------------------


def run_raw(
    variant: str, job: dict[str, Any], group: str, n: int, timeout: float
) -> dict[str, Any]:
    """Consume `n` records as they are produced; done time by event id, with the driver's."""
    assigned = threading.Event()
    consumer = Consumer(
        kafka_config(job["bootstrap"], {"group.id": group, "auto.offset.reset": "earliest"})
    )
    consumer.subscribe([job["topic"]], on_assign=lambda *_: assigned.set())
    done: dict[str, float] = {}
    try:
        deadline = time.monotonic() + 60
        while not assigned.is_set():  # the topic is empty: nothing is consumed meanwhile
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions within 60 s")
            consumer.poll(0.1)
        process, pipe = start_driver(job)
        deadline = time.monotonic() + timeout
        while len(done) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{variant} read {len(done)}/{n} records in {timeout:.0f} s")
            if variant == "raw-poll":
                message = consumer.poll(0.1)
                messages = [] if message is None else [message]
            else:
                messages = consumer.consume(500, timeout=0.1)
            for message in messages:
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                event = decode(message.value(), cast(Any, message.headers()), c.EVENT_TYPE)
                done[event.event_id] = time.time()
        result = finish_driver(process, pipe, timeout)
    finally:
        consumer.close()
    result["done"] = done
    return result


def run_app(
    job: dict[str, Any], settings: Any, engine: Engine, n: int, args: argparse.Namespace
) -> dict[str, Any]:
    names = c.names_of(settings)
    job["watch"] = {
        "database_url": args.database_url,
        "group": names.group,
        "topic": names.main,
        "n": n,
        "poll_s": args.db_poll_ms / 1000,
        "stall_s": args.stall_timeout,
    }
    with running_app(settings, {c.EVENT_TYPE: NoopHandler()}, partitions=True):
        process, pipe = start_driver(job)
        return finish_driver(process, pipe, args.timeout)


# -- statistics and report -------------------------------------------------------------------


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(q / 100 * len(ordered) + 0.5))
    return ordered[min(rank, len(ordered)) - 1]


def latencies(result: dict[str, Any], warmup_s: float) -> dict[str, Any]:
    produced, done = result["produced"], result["done"]
    first = min(produced.values())
    missing = [e for e in produced if e not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(produced)} events never done")
    ms = sorted((done[e] - t) * 1000 for e, t in produced.items() if t - first >= warmup_s)
    span = max(produced.values()) - first
    poll_s = result.get("poll_period_s")
    return {
        **{"produced": len(produced), "done": len(done), "measured": len(ms)},
        "produce_rate": len(produced) / span if span > 0 else None,
        "pacer_worst_lag_ms": result["pacer_worst_lag_s"] * 1000,
        "db_poll_period_ms": None if poll_s is None else poll_s * 1000,
        **{f"p{q}_ms": percentile(ms, q) for q in (50, 90, 99)},
        **{"max_ms": ms[-1], "mean_ms": sum(ms) / len(ms)},
    }


def run_round(
    variant: str,
    round_no: int,
    data: list[IdRecord],
    rate: float,
    args: argparse.Namespace,
    engine: Engine,
) -> dict[str, Any]:
    with c.fresh_prefix(args) as prefix:
        settings, names = prefix.settings, prefix.names
        job = {"bootstrap": args.bootstrap, "topic": names.main, "records": data, "rate": rate}
        group = names.group if variant == "app" else f"{settings.topic_prefix}-{variant}"
        prefix.groups.append(group)
        if variant == "app":
            result = run_app(job, settings, engine, len(data), args)
        else:
            result = run_raw(variant, job, group, len(data), args.timeout)
    return {"round": round_no, **latencies(result, args.warmup)}


def max_throughput(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    n = args.burst_events
    with c.fresh_prefix(args) as prefix:
        prefix.groups.append(prefix.names.group)
        c.produce(args.bootstrap, prefix.names.main, c.dataset(n))
        limits = (args.timeout, args.stall_timeout)
        run = run_app_backlog(prefix.settings, engine, NoopHandler(), n, limits)
    return {
        "events": n,
        "seconds": run.seconds,
        "rate": n / run.seconds,
        "succeeded": run.succeeded,
    }


STATS = ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")


def summarise(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    medians = {
        v: {s: c.median([r[s] for r in rs]) or 0.0 for s in STATS} for v, rs in results.items()
    }
    base = medians[BASELINE]
    return [
        {
            "name": variant,
            "rounds": rounds,
            **{f"median_{s}": medians[variant][s] for s in STATS},
            **{f"added_{s}": medians[variant][s] - base[s] for s in ("p50_ms", "p99_ms")},
        }
        for variant, rounds in results.items()
    ]


def render_text(report: dict[str, Any]) -> str:
    cfg, mx = report["config"], report["max_throughput"]
    title = (
        "qchem-events framework overhead benchmark (latency per event at half of max throughput)"
    )
    lines = [
        *driver.header(report, title),
        "app:      " + ", ".join(f"{k}={v}" for k, v in cfg["app_settings"].items()),
        f"max:      app, no-op handler, {mx['events']:,} events backlog: "
        + ("-" if mx["rate"] is None else f"{mx['rate']:,.0f} ev/s"),
        f"paced:    {cfg['rate']:,.0f} ev/s for {cfg['seconds']} s per variant "
        f"({cfg['events']:,} events, first {cfg['warmup_s']} s left out), {cfg['rounds']} round(s)",
        "",
    ]
    headers = ["variant", "P50 ms", "P90 ms", "P99 ms", "max ms", "mean ms"]
    headers += ["+P50 ms", "+P99 ms", "rounds P50/P99"]
    rows = [
        [
            v["name"],
            *(f"{v[f'median_{s}']:.1f}" for s in STATS),
            *(f"{v[f'added_{s}']:+.1f}" for s in ("p50_ms", "p99_ms")),
            " ".join(f"{r['p50_ms']:.1f}/{r['p99_ms']:.1f}" for r in v["rounds"]),
        ]
        for v in report["variants"]
    ]
    lines.append(f"latency produce() -> done, medians over rounds; + = vs {report['baseline']}")
    lines.append(c.format_table(headers, rows))
    polls = [r["db_poll_period_ms"] for v in report["variants"] for r in v["rounds"]]
    polls = [p for p in polls if p is not None]
    if polls:
        lines.append(f"app outcome times: +-{max(polls) / 2:.1f} ms (half the DB poll period)")
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = driver.parser("bench.overhead", __doc__, smoke="tiny counts, 1 round (CI)")
    p.add_argument("--burst-events", type=int, default=20_000, help="for the max throughput")
    p.add_argument("--rate", type=float, help="events/s to pace at (default: half the max)")
    p.add_argument("--seconds", type=float, default=20.0, help="paced run per variant")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds left out of the stats")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--db-poll-ms", type=float, default=5.0)
    driver.add_limits(p, 300.0, what="run")
    args = p.parse_args(argv)
    if args.smoke:
        args.burst_events, args.seconds, args.warmup, args.rounds = 1_000, 1.5, 0.3, 1
    if min(args.burst_events, args.rounds) < 1 or not 0 <= args.warmup < args.seconds:
        p.error("--burst-events and --rounds must be positive, 0 <= --warmup < --seconds")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    return args


def measure(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    mx = max_throughput(args, engine)
    c.warn(f"max throughput: {mx['rate']:,.0f} ev/s over {mx['events']:,} events")
    # Half of THIS run's maximum: the same machine state as the paced runs after it.
    rate = args.rate or mx["rate"] / 2
    data = dataset(max(1, round(rate * args.seconds)))
    results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for round_no, variant in driver.rounds(VARIANTS, args.rounds):
        r = run_round(variant, round_no, data, rate, args, engine)
        results[variant].append(r)
        c.warn(f"round {round_no} {variant}: P50 {r['p50_ms']:.1f} ms P99 {r['p99_ms']:.1f} ms")
    return {
        "config": {
            "rounds": args.rounds,
            "rate": rate,
            "seconds": args.seconds,
            "events": len(data),
            "warmup_s": args.warmup,
            "db_poll_ms": args.db_poll_ms,
            "keys": 1000,
            "partitions": c.PARTITIONS,
            "app_settings": c.app_settings_of(args),
        },
        "max_throughput": mx,
        "baseline": BASELINE,
        "variants": summarise(results),
    }


def main(argv: list[str] | None = None) -> int:
    return driver.run(parse_args(argv), measure, render_text)


if __name__ == "__main__":
    sys.exit(main())
