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
import json
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time
import traceback
from typing import Any, ClassVar, cast

from confluent_kafka import Consumer, KafkaException, Producer
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection, Engine

from bench import common as c
from schemas.codec import decode, encode_json
from schemas.events import Event
from schemas.samples import sample_events

BASELINE = "raw-poll"
VARIANTS = ("raw-poll", "raw-batch", "app")
IdRecord = tuple[str, bytes, bytes]  # event id, key, value


class NoopHandler:
    event_type: ClassVar[str] = c.EVENT_TYPE
    dependency: ClassVar[str | None] = None

    def perform(self, event: Event) -> None:
        return None

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        pass


def dataset(count: int) -> list[IdRecord]:
    return [
        (e.event_id, e.key.encode(), encode_json(e))
        for e in sample_events(c.EVENT_TYPE, count, keys=1000)
    ]


# -- the child process: paced producer and, for the app, the durable-outcome watcher ---------


def paced_produce(
    bootstrap: str, topic: str, records: list[IdRecord], rate: float
) -> tuple[dict[str, float], float]:
    """Produce evenly spread at `rate`; produce() call times by event id, and the worst lag
    of a produce() behind its schedule (the pacer's own honesty check)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 1, "enable.idempotence": True}
    )
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


# -- the variants (this process) --------------------------------------------------------------


def run_raw(
    variant: str, job: dict[str, Any], group: str, n: int, timeout: float
) -> dict[str, Any]:
    """Consume `n` records as they are produced; done time by event id, with the driver's."""
    assigned = threading.Event()
    consumer = Consumer(
        {"bootstrap.servers": job["bootstrap"], "group.id": group, "auto.offset.reset": "earliest"}
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
    from ops.app import App

    app = App(settings, handlers={c.EVENT_TYPE: NoopHandler()})
    try:
        app.start()
        for listener in app.listeners:
            if not listener.assigned.wait(timeout=60):
                raise TimeoutError("the app got no partitions within 60 s")
        process, pipe = start_driver(job)
        return finish_driver(process, pipe, args.timeout)
    finally:
        app.stop()


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
    settings = c.bench_settings(args.bootstrap, args.database_url, c.new_prefix())
    names = c.names_of(settings)
    topics = c.prepare_topics(settings)
    job = {"bootstrap": args.bootstrap, "topic": names.main, "records": data, "rate": rate}
    group = names.group if variant == "app" else f"{settings.topic_prefix}-{variant}"
    try:
        if variant == "app":
            result = run_app(job, settings, engine, len(data), args)
        else:
            result = run_raw(variant, job, group, len(data), args.timeout)
    finally:
        if not args.keep_topics:
            c.delete_topics(args.bootstrap, topics, [group])
    return {"round": round_no, **latencies(result, args.warmup)}


def max_throughput(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    settings = c.bench_settings(args.bootstrap, args.database_url, c.new_prefix())
    names = c.names_of(settings)
    topics = c.prepare_topics(settings)
    n = args.burst_events
    try:
        c.produce(args.bootstrap, names.main, c.dataset(n))
        run = c.run_app_backlog(
            settings, engine, NoopHandler(), n, args.timeout, args.stall_timeout
        )
    finally:
        if not args.keep_topics:
            c.delete_topics(args.bootstrap, topics, [names.group])
    succeeded = run["succeeded"]
    return {
        "events": n,
        "seconds": run["seconds"],
        "rate": n / run["seconds"],
        "succeeded": succeeded,
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
    lines = [
        "qchem-events framework overhead benchmark (latency per event at half of max throughput)",
        *c.machine_lines(report),
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
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--burst-events", type=int, default=20_000, help="for the max throughput")
    p.add_argument("--rate", type=float, help="events/s to pace at (default: half the max)")
    p.add_argument("--seconds", type=float, default=20.0, help="paced run per variant")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds left out of the stats")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--db-poll-ms", type=float, default=5.0)
    p.add_argument("--smoke", action="store_true", help="tiny counts, 1 round (CI)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", c.DEFAULT_BOOTSTRAP)
    )
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", c.DEFAULT_DATABASE_URL))
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per run at most")
    p.add_argument("--stall-timeout", type=float, default=60.0, help="seconds without progress")
    p.add_argument("--keep-topics", action="store_true")
    args = p.parse_args(argv)
    if args.smoke:
        args.burst_events, args.seconds, args.warmup, args.rounds = 1_000, 1.5, 0.3, 1
    if min(args.burst_events, args.rounds) < 1 or not 0 <= args.warmup < args.seconds:
        p.error("--burst-events and --rounds must be positive, 0 <= --warmup < --seconds")
    if args.rate is not None and args.rate <= 0:
        p.error("--rate must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = c.prepared_engine(args.database_url)
    try:
        machine = c.machine_info(engine, args.database_url, args.bootstrap)
        app_settings = c.bench_settings(args.bootstrap, args.database_url, "bench")
        mx = max_throughput(args, engine)
        c.warn(f"max throughput: {mx['rate']:,.0f} ev/s over {mx['events']:,} events")
        # Half of THIS run's maximum: the same machine state as the paced runs after it.
        rate = args.rate or mx["rate"] / 2
        data = dataset(max(1, round(rate * args.seconds)))
        results: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(VARIANTS)
            for variant in VARIANTS[shift:] + VARIANTS[:shift]:
                r = run_round(variant, round_no, data, rate, args, engine)
                results[variant].append(r)
                c.warn(
                    f"round {round_no} {variant}: P50 {r['p50_ms']:.1f} ms P99 {r['p99_ms']:.1f} ms"
                )
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        report = {
            "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
            "machine": machine,
            "config": {
                "rounds": args.rounds,
                "rate": rate,
                "seconds": args.seconds,
                "events": len(data),
                "warmup_s": args.warmup,
                "db_poll_ms": args.db_poll_ms,
                "keys": 1000,
                "partitions": c.PARTITIONS,
                "app_settings": c.app_settings_of(app_settings),
            },
            "max_throughput": mx,
            "baseline": BASELINE,
            "variants": summarise(results),
        }
    finally:
        engine.dispose()
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
