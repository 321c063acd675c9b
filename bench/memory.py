"""Memory with a backlog (issue #6 benchmark 5): consumer RSS while it drains 1,000,000 events.

    .venv/bin/python -m bench.memory --events 1000000 --max-seconds 300 [--json]
    .venv/bin/python -m bench.memory --smoke --json       # CI: 20,000 events, seconds

The backlog (small Report events, 1,000 keys, 6 partitions) is encoded once and produced once
to a fresh prefix before any consumer starts. Each consumer then runs as a CHILD PROCESS, so
its RSS is its own: /proc/<pid>/status VmRSS is sampled every 0.2 s, and the child prints its
VmHWM (the kernel's peak RSS) as it exits.

* app-idle  - the application (ops.app.App, every thread, the pool, the HTTP server)
              on an empty topic of its own prefix: what it costs to exist (baseline).
* raw       - a bare confluent-kafka consume(500) + json.loads loop with librdkafka's default
              prefetch, draining the same backlog (baseline: the client's own memory).
* app       - the application draining the backlog, until done or --max-seconds after it is
              ready, then SIGTERM (a graceful stop: it finishes in-flight work and commits).

The app runs with a no-op Report handler (as bench.throughput), because the real one stores a
report per event and 1,000 keys repeat report ids (conflicts go to the DLQ). It is configured
only through the environment, as `qchem-events run` is. Target: peak RSS under 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import common as c
from bench import driver
from bench.backlog import CommitWatcher
from bench.rss import SAMPLE_S, Sampler, mb, proc_kb
from devtools.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TARGET_PEAK_MB = 200.0

# The children, kept to what is measured: each imports nothing of the benchmark.
APP_CHILD = """
import json
from typing import Any, ClassVar
from ops.app import App
from common.settings import load_settings
from ops.logging import configure

class NoopHandler:
    event_type: ClassVar[str] = "Report"
    dependency: ClassVar[str | None] = None
    def perform(self, event: Any) -> None:
        return None
    def apply(self, conn: Any, event: Any, performed: Any) -> None:
        pass

s = load_settings()
configure(s.log_level, s.log_format, s.log_redact_fields)
code = App(s, handlers={"Report": NoopHandler()}).run()
status = open("/proc/self/status").read()
hwm = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
print(json.dumps({"vmhwm_kb": hwm[0]}), flush=True)
raise SystemExit(code)
"""

RAW_CHILD = """
import json, sys, time
from confluent_kafka import Consumer
bootstrap, topic, group, n, max_s = sys.argv[1:4] + [int(sys.argv[4]), float(sys.argv[5])]
consumer = Consumer(
    {"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest"}
)
consumer.subscribe([topic])
count, first = 0, None
deadline = time.monotonic() + max_s
while count < n and time.monotonic() < deadline:
    for message in consumer.consume(500, timeout=1.0):
        if message.error() is None:
            json.loads(message.value())
            count += 1
            first = first or time.monotonic()
seconds = time.monotonic() - (first or time.monotonic())
consumer.close()
status = open("/proc/self/status").read()
hwm = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
print(json.dumps({"consumed": count, "seconds": seconds, "vmhwm_kb": hwm[0]}), flush=True)
"""


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def spawn_app(args: argparse.Namespace, prefix: str, port: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": args.bootstrap,
        "DATABASE_URL": args.database_url,
        "TOPIC_PREFIX": prefix,
        "TOPIC_PARTITIONS": str(c.PARTITIONS),
        "EVENT_TYPES": c.EVENT_TYPE,
        "METRICS_HOST": "127.0.0.1",
        "METRICS_PORT": str(port),
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-c", APP_CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )


def stop_child(proc: subprocess.Popen[str], sampler: Sampler) -> dict[str, Any]:
    """SIGTERM (graceful), wait, and read the JSON line the child printed last."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    sampler.join()
    lines = [line for line in (out or "").splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    result["exit_code"] = proc.returncode
    return result


def wait_ready(proc: subprocess.Popen[str], port: int, sampler: Sampler) -> float:
    deadline = time.monotonic() + 90
    while not ready(port):
        if proc.poll() is not None:
            raise RuntimeError(f"the app child exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("the app child was not ready within 90 s")
        time.sleep(0.1)
    return sampler.now()


def run_idle(args: argparse.Namespace) -> dict[str, Any]:
    with c.fresh_prefix(args) as prefix:
        prefix.groups.append(prefix.names.group)
        port = free_port()
        proc = spawn_app(args, prefix.settings.topic_prefix, port)
        sampler = Sampler(proc)
        try:
            t_ready = wait_ready(proc, port, sampler)
            time.sleep(args.idle_seconds)
            t_end = sampler.now()
            hwm = proc_kb(proc.pid, "VmHWM")
        finally:
            result = stop_child(proc, sampler)
    window = sampler.between(t_ready, t_end)
    return {
        "name": "app-idle",
        "ready_s": round(t_ready, 2),
        "steady_rss_mb": mb(c.median(window)),
        "peak_rss_mb": mb(max(window, default=None)),
        "vmhwm_mb": mb(result.get("vmhwm_kb") or hwm),
        "exit_code": result["exit_code"],
        "rss_series_mb": sampler.series(),
    }


def run_raw(args: argparse.Namespace, topic: str, prefix: str, n: int) -> dict[str, Any]:
    argv = [args.bootstrap, topic, f"{prefix}-raw", str(n), str(args.max_seconds)]
    proc = subprocess.Popen(
        [sys.executable, "-c", RAW_CHILD, *argv], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    sampler = Sampler(proc)
    try:
        proc.wait(timeout=args.max_seconds + 120)
    finally:
        result = stop_child(proc, sampler)
    rss = [kb for _t, kb in sampler.samples]
    consumed = int(result.get("consumed", 0))
    return {
        "name": "raw",
        "events_processed": consumed,
        "drain_seconds": round(result.get("seconds", 0.0), 2),
        "rate": round(consumed / result["seconds"]) if result.get("seconds") else None,
        "peak_rss_mb": mb(max(rss, default=None)),
        "steady_rss_mb": mb(c.median(rss[len(rss) // 2 :])),
        "vmhwm_mb": mb(result.get("vmhwm_kb")),
        "exit_code": result["exit_code"],
        "rss_series_mb": sampler.series(),
    }


def run_app(args: argparse.Namespace, prefix: str, n: int) -> dict[str, Any]:
    names = c.names_of(c.bench_settings(args.bootstrap, args.database_url, prefix))
    watcher = CommitWatcher(args.bootstrap, names.group, names.main)
    port = free_port()
    proc = spawn_app(args, prefix, port)
    sampler = Sampler(proc)
    committed = 0
    try:
        t_ready = wait_ready(proc, port, sampler)
        while committed < n and sampler.now() - t_ready < args.max_seconds:
            if proc.poll() is not None:
                raise RuntimeError(f"the app child exited with {proc.returncode} while draining")
            time.sleep(1.0)
            committed = max(committed, watcher.committed())
        t_end = sampler.now()
        hwm_before_stop = proc_kb(proc.pid, "VmHWM")
    finally:
        result = stop_child(proc, sampler)
    processed = max(committed, watcher.committed())  # the graceful stop commits the rest
    watcher.close()
    drain = sampler.between(t_ready, t_end)
    second_half = sampler.between(t_ready + (t_end - t_ready) / 2, t_end)
    return {
        "name": "app",
        "ready_s": round(t_ready, 2),
        "events_processed": processed,
        "drained_share": round(processed / n, 4),
        "drain_seconds": round(t_end - t_ready, 2),
        "stopped_by_max_seconds": committed < n,
        "rate": round(committed / (t_end - t_ready)) if t_end > t_ready else None,
        "rss_at_ready_mb": mb(drain[0] if drain else None),
        "peak_rss_mb": mb(max(drain, default=None)),
        "steady_rss_mb": mb(c.median(second_half)),
        "vmhwm_mb": mb(result.get("vmhwm_kb") or hwm_before_stop),
        "vmhwm_before_stop_mb": mb(hwm_before_stop),
        "exit_code": result["exit_code"],
        "rss_series_mb": sampler.series(),
    }


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    title = "qchem-events memory benchmark (RSS of the consumer process draining a backlog)"
    lines = [
        *driver.header(report, title),
        f"backlog:  {cfg['events']:,} Report events ({cfg['bytes_per_event']} B each), "
        f"produced in {cfg['produce_s']:.0f} s; app stopped after --max-seconds "
        f"{cfg['max_seconds']:.0f}",
        f"target:   peak RSS < {TARGET_PEAK_MB:.0f} MB",
        "",
    ]
    rows = [
        [
            v["name"],
            str(v.get("events_processed", "-")),
            str(v.get("drain_seconds", "-")),
            c.fmt_rate(v.get("rate")),
            str(v["steady_rss_mb"]),
            str(v["peak_rss_mb"]),
            str(v["vmhwm_mb"]),
        ]
        for v in report["variants"]
    ]
    headers = ["variant", "events", "seconds", "ev/s", "steady MB", "peak MB", "VmHWM MB"]
    lines.append(c.format_table(headers, rows))
    s = report["summary"]
    lines += [
        "",
        f"app peak {s['app_peak_mb']} MB = {s['app_peak_vs_idle']:.2f}x idle, "
        f"{s['app_peak_vs_raw']:.2f}x raw; drained {s['drained_share']:.1%}; target "
        + ("met" if s["target_met"] else f"missed by {s['missed_by_mb']:.1f} MB"),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = driver.parser("bench.memory", __doc__, smoke="20,000 events (CI)")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--max-seconds", type=float, default=300.0, help="drain at most this long")
    p.add_argument("--idle-seconds", type=float, default=20.0, help="idle baseline's length")
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.max_seconds, args.idle_seconds = 20_000, 60.0, 4.0
    if args.events < 1 or args.max_seconds <= 0:
        p.error("--events must be 1 or more, --max-seconds positive")
    return args


def measure(args: argparse.Namespace, engine: Any) -> dict[str, Any]:
    engine.dispose()  # this process's connections are not what is measured
    with c.fresh_prefix(args) as prefix:
        names, run_prefix = prefix.names, prefix.settings.topic_prefix
        prefix.groups += [names.group, f"{run_prefix}-raw"]
        try:
            data = c.dataset(args.events)
            size = len(data[0][1])
            produce_s = c.produce(args.bootstrap, names.main, data)
            del data  # ~400 MB for a million: not needed any more
            c.warn(f"{args.events:,} events produced in {produce_s:.0f} s")
            idle = run_idle(args)
            c.warn(f"app-idle: {idle['steady_rss_mb']} MB")
            raw = run_raw(args, names.main, run_prefix, args.events)
            c.warn(f"raw: peak {raw['peak_rss_mb']} MB, {raw['events_processed']:,} events")
            app = run_app(args, run_prefix, args.events)
            c.warn(f"app: peak {app['peak_rss_mb']} MB, {app['events_processed']:,} events")
        finally:
            c.forget_rows(args.database_url, [names.group])
    return {
        "config": {
            "events": args.events,
            "bytes_per_event": size,
            "produce_s": round(produce_s, 1),
            "max_seconds": args.max_seconds,
            "idle_seconds": args.idle_seconds,
            "partitions": c.PARTITIONS,
            "sample_interval_s": SAMPLE_S,
        },
        "target_peak_mb": TARGET_PEAK_MB,
        "variants": [idle, raw, app],
        "summary": summary(idle, raw, app),
    }


def summary(idle: dict[str, Any], raw: dict[str, Any], app: dict[str, Any]) -> dict[str, Any]:
    # VmHWM is the kernel's peak; a sample can exceed it by a few 100 kB (its RSS counters
    # are per-thread caches, synced lazily): the larger of the two.
    peak = max(app["vmhwm_mb"] or 0.0, app["peak_rss_mb"] or 0.0)
    raw_peak = max(raw["vmhwm_mb"] or 0.0, raw["peak_rss_mb"] or 0.0)
    return {
        "app_peak_mb": peak,
        "app_peak_vs_idle": peak / idle["steady_rss_mb"],
        "raw_peak_mb": raw_peak,
        "idle_mb": idle["steady_rss_mb"],
        "app_peak_vs_raw": peak / raw_peak,
        "drained_share": app["drained_share"],
        "target_met": peak < TARGET_PEAK_MB,
        "missed_by_mb": max(0.0, round(peak - TARGET_PEAK_MB, 1)),
    }


def main(argv: list[str] | None = None) -> int:
    return driver.run(parse_args(argv), measure, render)


if __name__ == "__main__":
    sys.exit(main())
