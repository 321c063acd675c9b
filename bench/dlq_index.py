"""DLQ at scale (issue 14): summary and paged lists over 100,000 dead letters via the admin API.

    .venv/bin/python -m bench.dlq_index --records 100000 [--json]
    .venv/bin/python -m bench.dlq_index --smoke --json      # CI: 5,000 records, seconds

N dead letters (Report, 6 partitions, four error classes in turn, pipeline headers) are
produced to a fresh prefix's DLQ topic; the index is filled by the sync (the path records
that did not come through the pipeline take, timed as backfill). Then a real admin server
(in this process, waitress on a free port) answers over HTTP:

* summary of the type (counts by error class and failure kind, oldest/newest);
* the first page (100), a filtered page (one error class, status new), and a walk through
  every page of 500 with the cursor - each page's latency, and the memory of the walk:
  tracemalloc's peak of Python allocations and the process RSS before and after;
* one record's view (its bytes read from Kafka at its position).

Baseline: what `dlq summary` did before the index - read the whole DLQ topic into memory and
count (ops/dlq_replay.py `select_records` + ops/dlq_render.py `summarize`). Target: summary
and every page under 2 s at 100,000 records, memory independent of the DLQ's depth.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
import urllib.request
from typing import Any

from confluent_kafka import Producer
from sqlalchemy import text

from bench import common as c
from devtools.dead_letters import exhausted_headers
from devtools.kafka import kafka_config
from ops.admin.config import load_admin_settings
from ops.admin.run import AdminServer
from ops.dlq import Filters
from ops.dlq_query import sync_index
from ops.dlq_render import summarize
from ops.dlq_replay import select_records
from retry_topics import headers as rh

TARGET_S = 2.0
CLASSES = ["DependencyDownError", "TimeoutError", "PermanentError", "ValidationError"]


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def produce_dead_letters(settings: Any, count: int) -> float:
    names = c.names_of(settings)
    now = int(time.time() * 1000)
    headers = [
        exhausted_headers(
            names,
            rh.Origin(names.main, 0, n, now - 60_000),
            rh.Failure(cls, "failed after 3 attempts", "Traceback ...", "transient"),
            source_headers=[("content-type", b"application/json")],
            first_failure_ms=now - 30_000,
        )
        for n, cls in enumerate(CLASSES)
    ]
    records = c.dataset(count)
    producer = Producer(kafka_config(settings, {"linger.ms": 50, "acks": "all"}))
    started = time.monotonic()
    for n, (key, value) in enumerate(records):
        while True:
            try:
                producer.produce(names.dlq, key=key, value=value, headers=headers[n % 4])  # type: ignore[arg-type]
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0, "not every dead letter was delivered"
    return time.monotonic() - started


def get(url: str) -> tuple[float, Any]:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=120) as response:
        body = json.loads(response.read())
    return time.monotonic() - started, body


def timed(url: str, rounds: int) -> dict[str, Any]:
    seconds = [get(url)[0] for _ in range(rounds)]
    return {"median_s": c.median(seconds), "max_s": max(seconds), "rounds": rounds}


def walk(base: str, count: int) -> dict[str, Any]:
    """Every page of 500 through the cursor: latencies, records seen, memory of the walk."""
    rss_before = rss_mb()
    tracemalloc.start()
    latencies, seen, cursor = [], 0, None
    while True:
        url = f"{base}/api/v1/dlq/records?type=Report&limit=500" + (
            f"&cursor={cursor}" if cursor else ""
        )
        seconds, page = get(url)
        latencies.append(seconds)
        seen += len(page["records"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seen == count, f"the walk saw {seen} of {count} records"
    return {
        "pages": len(latencies),
        "records": seen,
        "total_s": sum(latencies),
        "median_page_s": c.median(latencies),
        "max_page_s": max(latencies),
        "tracemalloc_peak_mb": peak / 1_048_576,
        "rss_before_mb": rss_before,
        "rss_after_mb": rss_mb(),
    }


def baseline(settings: Any, engine: Any) -> dict[str, Any]:
    """The old `dlq summary`: the whole topic read into memory, then counted."""
    tracemalloc.start()
    started = time.monotonic()
    chosen = select_records(settings, engine, "Report", Filters())
    row = summarize("Report", chosen.topic, chosen.records, chosen.replayed)
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"summary_s": seconds, "count": row["count"], "tracemalloc_peak_mb": peak / 1_048_576}


def run(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", c.DEFAULT_BOOTSTRAP)
    database_url = os.environ.get("DATABASE_URL", c.DEFAULT_DATABASE_URL)
    engine = c.prepared_engine(database_url)
    settings = c.bench_settings(bootstrap, database_url, c.new_prefix())
    topics = c.prepare_topics(settings)
    dlq = c.names_of(settings).dlq
    report: dict[str, Any] = {
        "benchmark": "dlq_index",
        "config": {"records": args.records, "partitions": c.PARTITIONS, "rounds": args.rounds},
        "machine": c.machine_info(engine, database_url, bootstrap),
        "target_s": TARGET_S,
    }
    server = None
    try:
        produced_s = produce_dead_letters(settings, args.records)
        started = time.monotonic()
        indexed = sync_index(settings, engine, "Report")
        report["backfill"] = {
            "produced_s": produced_s,
            "indexed": indexed,
            "sync_s": time.monotonic() - started,
        }
        server = AdminServer(settings, load_admin_settings(port=0, sync_interval_s=3600))
        server.start()
        base = server.url
        first_ref = get(f"{base}/api/v1/dlq/records?type=Report&limit=1")[1]["records"][0]["id"]
        report["api"] = {
            "summary": timed(f"{base}/api/v1/dlq/summary?type=Report", args.rounds),
            "first_page_100": timed(
                f"{base}/api/v1/dlq/records?type=Report&limit=100", args.rounds
            ),
            "filtered_page_100": timed(
                f"{base}/api/v1/dlq/records?type=Report&error_class=TimeoutError&status=new&limit=100",
                args.rounds,
            ),
            "record_view": timed(f"{base}/api/v1/dlq/records/{first_ref}", args.rounds),
            "walk_500": walk(base, args.records),
        }
        count = get(f"{base}/api/v1/dlq/summary?type=Report")[1]["total"]
        assert count == args.records, f"summary counted {count} of {args.records}"
        if not args.no_baseline:
            report["baseline_whole_topic"] = baseline(settings, engine)
    finally:
        if server is not None:
            server.stop()
        with engine.begin() as conn:
            for table in ("dlq_entries", "dlq_replayed_records", "dlq_purged_records"):
                conn.execute(text(f"DELETE FROM {table} WHERE dlq_topic = :t"), {"t": dlq})
        c.delete_topics(bootstrap, topics, [])
    api = report["api"]
    slowest = max(
        api["summary"]["max_s"],
        api["first_page_100"]["max_s"],
        api["filtered_page_100"]["max_s"],
        api["walk_500"]["max_page_s"],
    )
    report["summary"] = {"slowest_answer_s": slowest, "target_met": slowest < TARGET_S}
    return report


def render(report: dict[str, Any]) -> str:
    api, back = report["api"], report["backfill"]
    walk_ = api["walk_500"]
    rows = [
        [name, f"{api[name]['median_s'] * 1000:.0f} ms", f"{api[name]['max_s'] * 1000:.0f} ms"]
        for name in ("summary", "first_page_100", "filtered_page_100", "record_view")
    ]
    rows.append(
        [
            "walk, pages of 500",
            f"{walk_['median_page_s'] * 1000:.0f} ms",
            f"{walk_['max_page_s'] * 1000:.0f} ms",
        ]
    )
    lines = [
        f"{report['config']['records']:,} dead letters; backfill by sync {back['sync_s']:.1f} s",
        c.format_table(["answer", "median", "max"], rows),
        f"walk: {walk_['pages']} pages, {walk_['total_s']:.1f} s, tracemalloc peak "
        f"{walk_['tracemalloc_peak_mb']:.1f} MB, RSS {walk_['rss_before_mb']:.0f} -> "
        f"{walk_['rss_after_mb']:.0f} MB",
    ]
    if "baseline_whole_topic" in report:
        b = report["baseline_whole_topic"]
        lines.append(
            f"baseline (whole topic in memory): summary {b['summary_s']:.1f} s, tracemalloc "
            f"peak {b['tracemalloc_peak_mb']:.0f} MB"
        )
    lines.append(
        f"target (< {TARGET_S:.0f} s): {'met' if report['summary']['target_met'] else 'MISSED'}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="5,000 records, 2 rounds (CI)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.records, args.rounds = 5_000, 2
    report = run(args)
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))


if __name__ == "__main__":
    main()
