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
import re
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from confluent_kafka import Consumer, Message
from sqlalchemy.engine import Engine

from bench import common as c
from bench import driver
from bench import faststream_job as fs
from bench.backlog import Stalled, run_app_backlog
from consumers.handlers.base import nothing_outside_the_database
from schemas.codec import decode

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


class NoopHandler(c.ReportHandler):
    """A Report handler that does nothing: only the framework's own work is measured.

    Database-only, like the real ChemicalStatus and Report handlers, so it takes their path
    (no worker thread; consumers/processing.py). bench/scaling.py measures the worker path."""

    perform = nothing_outside_the_database


# -- the variants ----------------------------------------------------------------------------


def run_raw(bootstrap: str, topic: str, group: str, n: int, validate: bool, timeout: float) -> int:
    """Consume `n` records (timed from the assignment); returns nanoseconds taken."""

    def handle(_consumer: Consumer, message: Message) -> None:
        if validate:
            decode(message.value(), cast(Any, message.headers()), c.EVENT_TYPE)
        else:
            json.loads(message.value())  # type: ignore[arg-type]

    def fetch(consumer: Consumer) -> list[Message]:
        return consumer.consume(500, timeout=1.0)

    return c.consume_timed(
        bootstrap, topic, {"group.id": group}, n, timeout, "raw loop", fetch, handle
    )


def run_round(
    variant: str, round_no: int, data: list[c.Record], args: argparse.Namespace, engine: Engine
) -> c.RoundResult:
    n = len(data)
    with c.fresh_prefix(args) as prefix:
        settings, names = prefix.settings, prefix.names
        produce_s = c.produce_backlog(args.bootstrap, names.main, data)
        if variant.startswith("raw-"):
            group = f"{settings.topic_prefix}-raw"
            prefix.groups.append(group)
            validate = variant == "raw-decode"
            ns = run_raw(args.bootstrap, names.main, group, n, validate, args.timeout)
            result = c.RoundResult(round_no, n, n, ns / 1e9, n / (ns / 1e9))
        else:
            if args.truncate:
                c.truncate(engine)
            limits = (args.timeout, args.stall_timeout)
            if variant in fs.VARIANTS:
                group = f"{settings.topic_prefix}-{variant}"  # its own rows, apart from the app's
                prefix.groups.append(group)
                run = fs.run(variant, args.bootstrap, names.main, group, engine, n, limits)
            else:
                prefix.groups.append(names.group)
                concurrency = int(variant.removeprefix("app-c"))
                app_settings = settings.model_copy(update={"concurrency": concurrency})
                profile = args.profile / variant if args.profile and round_no == 1 else None
                run = run_app_backlog(app_settings, engine, NoopHandler(), n, limits, profile)
            result = run.as_round(round_no, n)
        result.produce_seconds = produce_s
        return result


# -- report ----------------------------------------------------------------------------------


def describe(variant: str) -> str:
    if variant.startswith("app-c"):
        return DESCRIPTIONS["app"].format(n=variant.removeprefix("app-c"))
    return DESCRIPTIONS[variant]


def summarise(results: dict[str, list[c.RoundResult]]) -> list[dict[str, Any]]:
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
    p = driver.parser("bench.throughput", __doc__, smoke="2,000 events, 1 round (CI)")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="raw-json,app-c10,...")
    driver.add_limits(p, 900.0)
    p.add_argument("--no-truncate", dest="truncate", action="store_false")
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


def measure(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    data = c.dataset(args.events)
    results: dict[str, list[c.RoundResult]] = {v: [] for v in args.variants}
    stalls: list[str] = []
    for round_no, variant in driver.rounds(args.variants, args.rounds):
        try:
            result = run_round(variant, round_no, data, args, engine)
        except Stalled as exc:
            stalls.append(f"round {round_no} {variant}: {exc}")
            c.warn(f"STALLED, running the round again: {stalls[-1]}")
            result = run_round(variant, round_no, data, args, engine)
        results[variant].append(result)
        c.warn(f"round {round_no} {variant}: {result.rate:,.0f} ev/s")
    variants = summarise(results)
    return {
        "config": {
            "events": args.events,
            "rounds": args.rounds,
            "keys": 1000,
            "partitions": c.PARTITIONS,
            "truncate": args.truncate,
            "app_settings": c.app_settings_of(args, "concurrency"),  # varied per variant
        },
        "baseline": BASELINE,
        "variants": variants,
        "versus_faststream": fs.versus(variants),
        "stalls": stalls,  # rounds abandoned for lack of progress and run again
    }


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        *driver.header(report, "qchem-events throughput benchmark"),
        f"dataset:  {cfg['events']:,} Report events ({cfg['keys']} keys, "
        f"{cfg['partitions']} partitions) per round, {cfg['rounds']} round(s), interleaved",
        "app:      " + ", ".join(f"{k}={v}" for k, v in cfg["app_settings"].items()),
        "",
    ]
    rounds = cfg["rounds"]
    headers = ["variant", *(f"round {i + 1}" for i in range(rounds)), "median ev/s"]
    headers.append(f"vs {report['baseline']}")
    rows = []
    for v in report["variants"]:
        ratio = v["ratio_to_baseline"]
        rows.append(
            [
                v["name"],
                *c.round_rates(v, rounds),
                c.fmt_rate(v["median_rate"]),
                "-" if ratio is None else f"{ratio:.1%}",
            ]
        )
    lines += ["events/s (to the last durable outcome for app-*)", c.format_table(headers, rows)]
    detail = [
        [
            v["name"],
            f"{v['median_seconds']:.2f}",
            c.fmt_rate(v["median_committed_rate"]),
            f"{v['median_produce_seconds']:.2f}",
            "-" if v["median_write_batch"] is None else f"{v['median_write_batch']:.1f}",
            v["description"],
        ]
        for v in report["variants"]
    ]
    lines += [
        "",
        c.format_table(
            ["variant", "median s", "ev/s to committed", "produce s", "events/txn", "what"],
            detail,
        ),
    ]
    lines += [f"STALLED and run again: {stall}" for stall in report["stalls"]]
    return "\n".join(lines) + fs.render_versus(report["versus_faststream"])


def main(argv: list[str] | None = None) -> int:
    return driver.run(parse_args(argv), measure, render_text)


if __name__ == "__main__":
    sys.exit(main())
