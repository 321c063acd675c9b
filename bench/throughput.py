"""Throughput of qchem-events against the raw confluent-kafka loop, on the same broker, in one run.

    .venv/bin/python -m bench.throughput --events 200000 --rounds 3 [--json]
    .venv/bin/python -m bench.throughput --smoke --json          # CI: 2,000 events, 1 round

Variants (rounds interleaved, the order rotated each round, so noise hits all of them alike):

* raw-json   - Consumer.consume(500) + json.loads of each value: Python's physical limit here
* raw-decode - the same loop + schemas.codec.decode (our validation), for reference
* app-cN     - ops.app.App at CONCURRENCY=N with a no-op Report handler: the framework,
               validation, dedup rows + event records in PostgreSQL (group commit) and offset
               commits. Timed from partition assignment to the last event record written
               (max(updated_at) of the group's records); the time until the committed offsets
               reach the end offsets is reported too.
* faststream, faststream-batch - the same job on FastStream, written as its docs teach
               (bench/faststream_job.py): per-message and batch subscribers, timed alike.

Each round produces the dataset to a fresh prefix (not timed) and deletes the topics after.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

from confluent_kafka import Consumer, KafkaException
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from bench import common as c
from bench import faststream_job as fs
from common.settings import Settings
from consumers.handlers.base import nothing_outside_the_database
from ops.app import App
from schemas.codec import decode
from schemas.events import Event

# The per-message FastStream variant runs at ~140 events/s: 200,000 events would take ~25 min a
# round, so it is measured on its own, smaller run (`make bench`, BENCHMARKS.md).
DEFAULT_VARIANTS = ("raw-json", "raw-decode", "app-c1", "app-c10", "faststream-batch")
BASELINE = "raw-json"
DESCRIPTIONS = {
    "raw-json": "raw consume(500) loop + json.loads",
    "raw-decode": "raw consume(500) loop + schemas.codec.decode",
    "app": "ops.app.App, no-op handler, CONCURRENCY={n}",
    **fs.DESCRIPTIONS,
}
POLL_S = 0.2


class Stalled(RuntimeError):
    """The app made no progress for --stall-timeout seconds (seen when the shared broker is
    restarted by someone else mid-round); the round is run again once on a fresh prefix."""


class NoopHandler:
    """A Report handler that does nothing: only the framework's own work is measured.

    Database-only, like the real ChemicalStatus and Report handlers, so it takes their path
    (no worker thread; consumers/processing.py). bench/scaling.py measures the worker path."""

    event_type: ClassVar[str] = c.EVENT_TYPE
    dependency: ClassVar[str | None] = None
    perform = nothing_outside_the_database

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        pass


@dataclass
class RoundResult:
    round: int
    events: int
    processed: int
    seconds: float
    rate: float
    produce_seconds: float = 0.0
    committed_seconds: float | None = None  # app: until committed offsets reached the end
    committed_rate: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)
    write_batch_mean: float | None = None  # app: events per database transaction


# -- the variants ----------------------------------------------------------------------------


def run_raw(bootstrap: str, topic: str, group: str, n: int, validate: bool, timeout: float) -> int:
    """Consume `n` records (timed from the assignment); returns nanoseconds taken."""
    assigned: list[int] = []

    def on_assign(_consumer: Consumer, _partitions: list[Any]) -> None:
        if not assigned:
            assigned.append(time.perf_counter_ns())

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic], on_assign=on_assign)
    count = 0
    deadline = time.monotonic() + timeout
    try:
        while count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw loop read {count}/{n} records in {timeout}s")
            for message in consumer.consume(500, timeout=1.0):
                error = message.error()
                if error is not None:
                    if error.fatal():
                        raise KafkaException(error)
                    continue
                if validate:
                    decode(message.value(), cast(Any, message.headers()), c.EVENT_TYPE)
                else:
                    json.loads(message.value())  # type: ignore[arg-type]
                count += 1
        return time.perf_counter_ns() - assigned[0]
    finally:
        consumer.close()


def last_record_at(engine: Engine, group: str) -> float | None:
    """Wall-clock time of the group's last event record (set just before its commit)."""
    with engine.connect() as conn:
        query = text("SELECT max(updated_at) FROM event_records WHERE consumer_group = :g")
        last = conn.execute(query, {"g": group}).scalar_one()
        return None if last is None else float(last.timestamp())


def counters() -> tuple[float, float, float]:
    """This process's successes (counted after the DB commit), write transactions, events
    written in them - the apps' own Prometheus metrics."""
    labels = {"event_type": c.EVENT_TYPE, "outcome": "success"}
    return (
        REGISTRY.get_sample_value("qchem_events_processed_total", labels) or 0.0,
        REGISTRY.get_sample_value("qchem_db_write_batch_events_count") or 0.0,
        REGISTRY.get_sample_value("qchem_db_write_batch_events_sum") or 0.0,
    )


def run_app(
    settings: Settings, engine: Engine, n: int, timeout: float, stall_s: float, profile: Path | None
) -> RoundResult:
    names = c.names_of(settings)
    app = App(settings, handlers={c.EVENT_TYPE: NoopHandler()})
    watcher = c.CommitWatcher(settings.kafka_bootstrap_servers, names.group, names.main)
    profiler = c.ThreadProfiler() if profile else None
    if profiler is not None:
        profiler.start()
    before = counters()
    try:
        app.start()
        for listener in app.listeners:
            if not listener.assigned.wait(timeout=60):
                raise TimeoutError("the app got no partitions within 60 s")
        if not app.ready():
            raise RuntimeError("app.ready() is false after every listener was assigned")
        t0, t0_wall = time.perf_counter(), time.time()
        committed_s: float | None = None
        progress = (0, t0)  # committed offsets, when they last moved
        while committed_s is None:
            time.sleep(POLL_S)
            if app.failed.is_set():
                raise RuntimeError("a listener crashed (see stderr)")
            committed = watcher.committed()
            now = time.perf_counter()
            if committed >= n:
                committed_s = now - t0
            elif committed > progress[0]:
                progress = (committed, now)
            elif now - progress[1] > stall_s or now - t0 > timeout:
                done = c.record_count(engine, names.group)
                error = Stalled if now - t0 <= timeout else TimeoutError
                raise error(
                    f"{names.group}: {done}/{n} records, {committed} committed after "
                    f"{now - t0:.0f} s, none for {now - progress[1]:.0f} s"
                )
        statuses = c.record_statuses(engine, names.group)
        last = last_record_at(engine, names.group)
        records_s = committed_s if last is None else last - t0_wall
    finally:
        app.stop()
        watcher.close()
        if profiler is not None and profile is not None:
            profiler.write(profile, settings.topic_prefix)
    succeeded, batches, written = (a - b for a, b in zip(counters(), before, strict=True))
    if statuses.get("succeeded") != n:
        # Another process emptying the tables (a test's fixture) does this. The rate still
        # holds: it is timed by the last record written (or by the committed offsets when no
        # record is left); `processed` counts successes from the app's metrics.
        c.warn(f"{names.group}: event records {statuses} for {n} events (truncated by others?)")
    return RoundResult(
        round=0,
        events=n,
        processed=int(succeeded),
        seconds=records_s,
        rate=n / records_s,
        committed_seconds=committed_s,
        committed_rate=n / committed_s,
        statuses=statuses,
        write_batch_mean=written / batches if batches else None,
    )


def run_faststream(
    variant: str, args: argparse.Namespace, engine: Engine, topic: str, group: str, n: int
) -> RoundResult:
    out = fs.run(variant, args.bootstrap, topic, group, engine, n, args.timeout, args.stall_timeout)
    if out.statuses.get("succeeded") != n:
        c.warn(f"{group}: event records {out.statuses} for {n} events (truncated by others?)")
    return RoundResult(
        round=0,
        events=n,
        processed=out.succeeded,
        seconds=out.records_seconds,
        rate=n / out.records_seconds,
        committed_seconds=out.committed_seconds,
        committed_rate=n / out.committed_seconds,
        statuses=out.statuses,
        write_batch_mean=out.write_batch_mean,
    )


def run_round(
    variant: str, round_no: int, data: list[c.Record], args: argparse.Namespace, engine: Engine
) -> RoundResult:
    n = len(data)
    settings = c.bench_settings(args.bootstrap, args.database_url, c.new_prefix())
    names = c.names_of(settings)
    topics = c.prepare_topics(settings)
    groups: list[str] = []
    try:
        produce_s = c.produce(args.bootstrap, names.main, data)
        produced = sum(c.end_offsets(args.bootstrap, names.main).values())
        if produced != n:
            raise RuntimeError(f"{names.main} holds {produced} records, expected {n}")
        if variant.startswith("raw-"):
            group = f"{settings.topic_prefix}-raw"
            groups.append(group)
            validate = variant == "raw-decode"
            ns = run_raw(args.bootstrap, names.main, group, n, validate, args.timeout)
            result = RoundResult(round_no, n, n, ns / 1e9, n / (ns / 1e9))
        elif variant in fs.VARIANTS:
            group = f"{settings.topic_prefix}-{variant}"  # its own rows, apart from the app's
            groups.append(group)
            if args.truncate:
                c.truncate(engine)
            result = run_faststream(variant, args, engine, names.main, group, n)
            result.round = round_no
        else:
            groups.append(names.group)
            concurrency = int(variant.removeprefix("app-c"))
            if args.truncate:
                c.truncate(engine)
            profile = args.profile if round_no == 1 else None
            result = run_app(
                settings.model_copy(update={"concurrency": concurrency}),
                engine,
                n,
                args.timeout,
                args.stall_timeout,
                profile / variant if profile else None,
            )
            result.round = round_no
        result.produce_seconds = produce_s
        return result
    finally:
        if not args.keep_topics:
            c.delete_topics(args.bootstrap, topics, groups)


# -- report ----------------------------------------------------------------------------------


def describe(variant: str) -> str:
    if variant.startswith("app-c"):
        return DESCRIPTIONS["app"].format(n=variant.removeprefix("app-c"))
    return DESCRIPTIONS[variant]


def summarise(results: dict[str, list[RoundResult]]) -> list[dict[str, Any]]:
    medians = {v: c.median([r.rate for r in rs]) for v, rs in results.items()}
    base = medians.get(BASELINE)
    out = []
    for variant, rounds in results.items():
        med = medians[variant]
        committed = [r.committed_rate for r in rounds if r.committed_rate is not None]
        batch_sizes = [r.write_batch_mean for r in rounds if r.write_batch_mean is not None]
        out.append(
            {
                "name": variant,
                "description": describe(variant),
                "rounds": [asdict(r) for r in rounds],
                "median_rate": med,
                "ratio_to_baseline": med / base if med is not None and base else None,
                "median_committed_rate": c.median(committed),
                "median_seconds": c.median([r.seconds for r in rounds]),
                "median_produce_seconds": c.median([r.produce_seconds for r in rounds]),
                "median_write_batch": c.median(batch_sizes),
            }
        )
    return out


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="2,000 events, 1 round (CI)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="raw-json,app-c10,...")
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", c.DEFAULT_BOOTSTRAP)
    )
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", c.DEFAULT_DATABASE_URL))
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per round at most")
    p.add_argument("--stall-timeout", type=float, default=60.0, help="seconds without progress")
    p.add_argument("--no-truncate", dest="truncate", action="store_false")
    p.add_argument("--keep-topics", action="store_true")
    p.add_argument("--profile", type=Path, help="pyinstrument the app variants' first round")
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.rounds = 2_000, 1
        if args.variants == ",".join(DEFAULT_VARIANTS):  # every variant, the slow one too
            args.variants += ",faststream"
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        if v not in DESCRIPTIONS and not re.fullmatch(r"app-c[1-9]\d*", v):
            p.error(f"unknown variant {v!r}")
    if args.events < 1 or args.rounds < 1:
        p.error("--events and --rounds must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    engine = c.prepared_engine(args.database_url)
    try:
        machine = c.machine_info(engine, args.database_url, args.bootstrap)
        app_settings = c.bench_settings(args.bootstrap, args.database_url, "bench")
        data = c.dataset(args.events)
        results: dict[str, list[RoundResult]] = {v: [] for v in args.variants}
        stalls: list[str] = []
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(args.variants)
            for variant in args.variants[shift:] + args.variants[:shift]:
                try:
                    result = run_round(variant, round_no, data, args, engine)
                except (Stalled, fs.Stalled) as exc:
                    stalls.append(f"round {round_no} {variant}: {exc}")
                    c.warn(f"STALLED, running the round again: {stalls[-1]}")
                    result = run_round(variant, round_no, data, args, engine)
                results[variant].append(result)
                c.warn(f"round {round_no} {variant}: {result.rate:,.0f} ev/s")
        variants = summarise(results)
        machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        report = {
            "command": " ".join(getattr(sys, "orig_argv", sys.argv)),
            "machine": machine,
            "config": {
                "events": args.events,
                "rounds": args.rounds,
                "keys": 1000,
                "partitions": c.PARTITIONS,
                "truncate": args.truncate,
                # The app's other settings come from the environment, as in production.
                "app_settings": {
                    k: getattr(app_settings, k)
                    for k in (
                        "max_in_flight",
                        "write_batch_max",
                        "db_writers_per_listener",
                        "db_pool_size",
                        "commit_interval_s",
                    )
                },
            },
            "baseline": BASELINE,
            "variants": variants,
            "versus_faststream": fs.versus(variants),
            "stalls": stalls,  # rounds abandoned for lack of progress and run again
        }
    finally:
        engine.dispose()
    text_report = c.render_text(report) + fs.render_versus(fs.versus(variants))
    print(json.dumps(report, indent=2) if args.json else text_report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
