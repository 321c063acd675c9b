"""The product as users run it: `qchem-events run` with the real handlers over a backlog.

    .venv/bin/python -m bench.real_handlers --events 60000 --rounds 2 [--json]
    .venv/bin/python -m bench.real_handlers --smoke --json        # CI: 1,000 events a type

For each event type (ChemicalStatus, Report, Email by default) and round: the type's sample
events (`qchem-events sample`; 1,000 chemicals or recipients, a report id each) are
produced to a fresh prefix; then, over that same backlog,

* raw-json - the baseline: `Consumer.consume(500)` + `json.loads`, no commits;
* app      - `qchem-events run` as a child process (EVENT_TYPES=<type>), the real handler,
             Email against a local SMTP server. Timed from /readyz answering 200 (partitions
             assigned) until the group's committed offsets reach the end offsets: every
             event durable and committed.

CPU per event (app process, every PostgreSQL process, the broker) is read from /proc over the
app's run (bench/cpu.py). Rounds rotate the order of the two.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench import common as c
from bench import driver
from bench.backlog import CommitWatcher, wait_committed
from bench.cpu import CpuMeter
from bench.throughput import run_raw
from common.settings import Settings, load_settings
from common.urls import parse_url
from devtools.devservers import SmtpSink
from devtools.ports import free_port
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.samples import sample_events

TYPES = ("ChemicalStatus", "Report", "Email")
CLI = str(Path(sys.executable).parent / "qchem-events")


def settings_for(args: argparse.Namespace, event_type: str, smtp_port: int) -> Settings:
    return load_settings(
        kafka_bootstrap_servers=args.bootstrap,
        database_url=args.database_url,
        topic_prefix=c.new_prefix(),
        topic_partitions=c.PARTITIONS,
        event_types=(event_type,),
        smtp_port=smtp_port,
    )


def child_env(settings: Settings, metrics_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TOPIC_PREFIX": settings.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "EVENT_TYPES": ",".join(settings.event_types),
        "SMTP_HOST": settings.smtp_host,
        "SMTP_PORT": str(settings.smtp_port),
        "METRICS_PORT": str(metrics_port),
        "LOG_LEVEL": "WARNING",
    }


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"qchem-events run exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"/readyz not 200 after {timeout:.0f} s")


def run_app(settings: Settings, n: int, args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    """`qchem-events run` over the backlog; seconds to all committed, CPU per event."""
    names = topic_names(settings, settings.event_types[0])
    port = free_port()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [CLI, "run"], env=child_env(settings, port), stdout=log, stderr=subprocess.STDOUT
        )
        watcher = CommitWatcher(settings.kafka_bootstrap_servers, names.group, names.main)
        try:
            wait_ready(port, process, 90)
            database = parse_url(settings.sqlalchemy_url).database
            with CpuMeter(process.pid, settings.kafka_bootstrap_servers, database) as meter:
                limits = (args.timeout, args.stall_timeout)
                t0 = time.perf_counter()
                committed_s = wait_committed(
                    watcher, n, t0, limits, lambda: names.group, poll_s=0.05
                )
            return {
                "seconds": committed_s,
                "cpu_us_per_event": meter.per_event(n),
                "statuses": c.record_statuses(engine, names.group),
            }
        except Exception:
            log.seek(0)
            c.warn(log.read()[-3000:].decode(errors="replace"))
            raise
        finally:
            watcher.close()
            process.terminate()
            process.wait(timeout=60)


def forget_reports(engine: Engine, report_ids: list[str]) -> None:
    """Sample report ids are the same every run (RPT-2026-000001...): the reports an earlier
    run stored under them would make this run's events conflicts (to the DLQ)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM reports WHERE report_id = ANY(:ids)"), {"ids": report_ids})


def run_round(
    event_type: str, order: list[str], args: argparse.Namespace, smtp: SmtpSink, engine: Engine
) -> dict[str, Any]:
    settings = settings_for(args, event_type, smtp.port)
    names = topic_names(settings, event_type)
    topics = c.prepare_topics(settings)
    # Keys repeat (1,000 chemicals, recipients) except for Report, whose key is the report id:
    # a second event asking for a taken report id is a conflict that goes to the DLQ.
    keys = None if event_type == "Report" else 1000
    events = sample_events(event_type, args.events, keys=keys)
    data = [(e.key.encode(), encode_json(e)) for e in events]
    if event_type == "Report":
        forget_reports(engine, [e.payload.report_id for e in events])
    out: dict[str, Any] = {}
    try:
        c.produce(args.bootstrap, names.main, data)
        for variant in order:
            if variant == "raw-json":
                group = f"{settings.topic_prefix}-raw"
                ns = run_raw(args.bootstrap, names.main, group, len(data), False, args.timeout)
                out[variant] = {"seconds": ns / 1e9}
            else:
                sent_before = len(smtp.messages)
                out[variant] = run_app(settings, len(data), args, engine)
                out[variant]["emails"] = len(smtp.messages) - sent_before
            out[variant]["rate"] = len(data) / out[variant]["seconds"]
            c.warn(f"{event_type} {variant}: {out[variant]['rate']:,.0f} ev/s")
    finally:
        if not args.keep_topics:
            groups = [names.group, f"{settings.topic_prefix}-raw"]
            c.delete_topics(args.bootstrap, topics, groups)
    return out


def summarise(rounds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for event_type, results in rounds.items():
        raw = c.median([r["raw-json"]["rate"] for r in results])
        app = c.median([r["app"]["rate"] for r in results])
        cpu = {
            proc: c.median([r["app"]["cpu_us_per_event"][proc] for r in results])
            for proc in results[0]["app"]["cpu_us_per_event"]
        }
        rows.append(
            {
                "event_type": event_type,
                "raw_json_rate": raw,
                "app_rate": app,
                "ratio_to_raw_json": app / raw if app and raw else None,
                "cpu_us_per_event": cpu,
                "rounds": results,
            }
        )
    return rows


def render(report: dict[str, Any]) -> str:
    lines = driver.header(report, "qchem-events real handlers (qchem-events run) vs raw-json")
    lines.append(f"dataset:  {report['events']:,} events a type, {report['rounds']} round(s)")
    table = [
        [
            r["event_type"],
            c.fmt_rate(r["raw_json_rate"]),
            c.fmt_rate(r["app_rate"]),
            "-" if r["ratio_to_raw_json"] is None else f"{r['ratio_to_raw_json']:.1%}",
            *(f"{r['cpu_us_per_event'].get(p, 0):.1f}" for p in ("app", "postgresql", "broker")),
        ]
        for r in report["types"]
    ]
    headers = ["event type", "raw-json ev/s", "app ev/s", "app/raw", "app us", "pg us", "kafka us"]
    lines += [
        "",
        "median ev/s; CPU us per event during the app's run",
        c.format_table(headers, table),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = driver.parser("bench.real_handlers", __doc__, smoke="1,000 events a type, 1 round (CI)")
    p.add_argument("--events", type=int, default=60_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--types", default=",".join(TYPES))
    driver.add_limits(p, 900.0)
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.rounds = 1_000, 1
    args.types = [t.strip() for t in args.types.split(",") if t.strip()]
    unknown = [t for t in args.types if t not in TYPES]
    if unknown:
        p.error(f"unknown event type(s) {unknown}; choose from {list(TYPES)}")
    if args.events < 1 or args.rounds < 1:
        p.error("--events and --rounds must be 1 or more")
    return args


def measure(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {t: [] for t in args.types}
    with SmtpSink() as smtp:
        for round_no in range(args.rounds):
            order = ["raw-json", "app"] if round_no % 2 == 0 else ["app", "raw-json"]
            for event_type in args.types:
                rounds[event_type].append(run_round(event_type, order, args, smtp, engine))
    return {"events": args.events, "rounds": args.rounds, "types": summarise(rounds)}


def main(argv: list[str] | None = None) -> int:
    return driver.run(parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
