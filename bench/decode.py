"""Decoding cost per event on the poll thread: `schemas.codec.decode`, slow path vs fast path.

    .venv/bin/python -m bench.decode --events 2000 --rounds 15 [--json]
    .venv/bin/python -m bench.decode --smoke --json       # seconds: 200 events, 3 rounds

No services. For each event type, `--events` sample events (`schemas.samples`, seeded) are
encoded as compact JSON once; a round decodes all of them with `decode(value, None, type)`
once per variant, variants rotated each round (the machine is shared and noisy):

* slow - the path without it: `json` + the compiled checker (`decode(..., fast_path=False)`);
* fast - the msgspec fast path (`CompiledType.fast`, schemas/fast_json.py) in front of it,
  as the app runs;
* json - `json.loads` alone, for reference: what parsing costs before any checking.

Each round is timed on the process's CPU clock (`time.process_time_ns`: a round that waits
for the CPU is not charged for it) and on the wall clock. Reported: the median of the rounds
in microseconds per event and events per second, and fast vs slow as a ratio of medians.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from common import event_types
from schemas.codec import decode
from schemas.compiled import compiled
from schemas.samples import sample_json_lines

VARIANTS = ("slow", "fast", "json")
SEED = 13


def _variant(name: str, event_type: str, values: list[bytes]) -> Callable[[], None]:
    def run_decode() -> None:
        for value in values:
            decode(value, None, event_type)

    def run_slow() -> None:
        for value in values:
            decode(value, None, event_type, fast_path=False)

    def run_json() -> None:
        for value in values:
            json.loads(value)

    return {"slow": run_slow, "fast": run_decode, "json": run_json}[name]


def measure(event_type: str, events: int, rounds: int) -> dict[str, Any]:
    values = [line.encode() for line in sample_json_lines(event_type, events, seed=SEED)]
    runs = {name: _variant(name, event_type, values) for name in VARIANTS}
    for run in runs.values():  # warm-up: caches, the first regex compilations
        run()
    cpu: dict[str, list[float]] = {name: [] for name in VARIANTS}
    wall: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for round_ in range(rounds):
        order = VARIANTS[round_ % len(VARIANTS) :] + VARIANTS[: round_ % len(VARIANTS)]
        for name in order:
            started_cpu, started_wall = time.process_time_ns(), time.perf_counter_ns()
            runs[name]()
            cpu[name].append((time.process_time_ns() - started_cpu) / 1000 / events)
            wall[name].append((time.perf_counter_ns() - started_wall) / 1000 / events)
    variants: dict[str, dict[str, Any]] = {}
    for name in VARIANTS:
        us = statistics.median(cpu[name])
        variants[name] = {
            "us_per_event_cpu": round(us, 3),
            "us_per_event_wall": round(statistics.median(wall[name]), 3),
            "events_per_s_cpu": round(1e6 / us),
            "rounds_us_cpu": [round(x, 3) for x in cpu[name]],
        }
    return {
        "event_type": event_type,
        "value_bytes": round(statistics.mean(len(v) for v in values)),
        "variants": variants,
        "fast_vs_slow": round(
            variants["slow"]["us_per_event_cpu"] / variants["fast"]["us_per_event_cpu"], 2
        ),
    }


def run(events: int, rounds: int) -> dict[str, Any]:
    load_start = os.getloadavg()
    names = event_types.names()
    types = [measure(event_type, events, rounds) for event_type in names]
    return {
        "command": " ".join(["python -m bench.decode", *sys.argv[1:]]),
        "machine": {
            "nproc": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "msgspec": msgspec.__version__,
            "loadavg_at_start": [round(x, 2) for x in load_start],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {"events": events, "rounds": rounds, "seed": SEED},
        "fast_types": [n for n in names if getattr(compiled(n), "fast", None) is not None],
        "types": types,
    }


def render_text(report: dict[str, Any]) -> str:
    m, cfg = report["machine"], report["config"]
    lines = [
        "qchem-events decode benchmark (median of rounds, CPU time per event)",
        f"command:  {report['command']}",
        f"machine:  nproc={m['nproc']}, {m['platform']}, Python {m['python']}, "
        f"msgspec {m['msgspec']}",
        f"          loadavg start {m['loadavg_at_start']} end {m['loadavg_at_end']}",
        f"dataset:  {cfg['events']:,} sample events per type, {cfg['rounds']} rounds, "
        "variants rotated",
        "",
        f"{'type':<16}{'bytes':>6}{'slow us':>10}{'fast us':>10}{'json us':>10}"
        f"{'slow ev/s':>12}{'fast ev/s':>12}{'fast/slow':>11}",
    ]
    for t in report["types"]:
        v = t["variants"]
        lines.append(
            f"{t['event_type']:<16}{t['value_bytes']:>6}"
            f"{v['slow']['us_per_event_cpu']:>10.2f}{v['fast']['us_per_event_cpu']:>10.2f}"
            f"{v['json']['us_per_event_cpu']:>10.2f}"
            f"{v['slow']['events_per_s_cpu']:>12,}{v['fast']['events_per_s_cpu']:>12,}"
            f"{t['fast_vs_slow']:>10.2f}x"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.decode", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--events", type=int, default=2000, help="sample events per type")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--smoke", action="store_true", help="200 events, 3 rounds")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    args = p.parse_args(argv)
    if args.smoke:
        args.events, args.rounds = 200, 3
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args.events, args.rounds)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
