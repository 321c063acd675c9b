"""Concurrency scaling: a handler that waits 20 ms (simulated I/O), against the ideal, in one run.

    .venv/bin/python -m bench.scaling --rounds 3 [--concurrency 1,10,50,100] [--json]
    .venv/bin/python -m bench.scaling --smoke --json          # CI: a few seconds, 1 round

Variants (rounds interleaved, the order rotated each round, so noise hits all of them alike):

* one-at-a-time - the design document's "current behaviour": a plain confluent-kafka loop
                  that polls ONE record, decodes it (schemas.codec.decode), sleeps 20 ms and
                  commits that record's offset synchronously before polling the next.
                  Ideal: 1 / 20 ms = 50 events/s.
* app-cN        - ops.app.App at CONCURRENCY=N with a Report handler whose `perform`
                  sleeps 20 ms (`dependency = None`: no breaker, no pre-check) and whose
                  `apply` does nothing; dedup rows, event records and offset commits as in
                  production. Ideal: N / 20 ms events/s.

Each variant is sized to run about --seconds at its ideal rate (events = ideal x seconds, at
least --min-events), over 1,000 keys, from a backlog produced to a fresh topic prefix (not
timed). The app is timed from partition assignment to its last event record; the baseline
from assignment to its last synchronous commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from typing import Any, cast

from confluent_kafka import Consumer, Message
from sqlalchemy.engine import Engine

from bench import common as c
from bench import driver
from bench.backlog import run_app_backlog
from schemas.codec import decode
from schemas.events import Event

BASELINE = "one-at-a-time"
DEFAULT_CONCURRENCY = (1, 10, 50, 100)
TARGETS = {10: 0.90, 50: 0.80}  # issue #6: share of the ideal at these concurrencies


class SleepHandler(c.ReportHandler):
    """A Report handler whose side effect is 20 ms of waiting, like an HTTP call or an SMTP
    send: the worker thread is blocked, the CPU is not."""

    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s

    def perform(self, event: Event) -> None:
        time.sleep(self.sleep_s)


def concurrency_of(variant: str) -> int:
    return 1 if variant == BASELINE else int(variant.removeprefix("app-c"))


def ideal_rate(variant: str, sleep_s: float) -> float:
    return concurrency_of(variant) / sleep_s


def events_for(variant: str, args: argparse.Namespace) -> int:
    return max(args.min_events, round(ideal_rate(variant, args.sleep_ms / 1000) * args.seconds))


# -- the variants ----------------------------------------------------------------------------


def run_one_at_a_time(
    bootstrap: str, topic: str, group: str, n: int, sleep_s: float, timeout: float
) -> float:
    """poll one, decode, sleep, commit it synchronously; seconds from assignment to the last
    commit."""

    def handle(consumer: Consumer, message: Message) -> None:
        decode(message.value(), cast(Any, message.headers()), c.EVENT_TYPE)
        time.sleep(sleep_s)
        consumer.commit(message=message, asynchronous=False)

    def fetch(consumer: Consumer) -> list[Message]:
        message = consumer.poll(1.0)
        return [] if message is None else [message]

    extra = {"group.id": group, "enable.auto.commit": False}
    ns = c.consume_timed(bootstrap, topic, extra, n, timeout, "one-at-a-time", fetch, handle)
    return ns / 1e9


def run_round(
    variant: str, round_no: int, data: list[c.Record], args: argparse.Namespace, engine: Engine
) -> c.RoundResult:
    n = len(data)
    sleep_s = args.sleep_ms / 1000
    with c.fresh_prefix(args) as prefix:
        settings, names = prefix.settings, prefix.names
        produce_s = c.produce_backlog(args.bootstrap, names.main, data)
        if variant == BASELINE:
            group = f"{settings.topic_prefix}-one"
            prefix.groups.append(group)
            seconds = run_one_at_a_time(args.bootstrap, names.main, group, n, sleep_s, args.timeout)
            return c.RoundResult(round_no, n, n, seconds, n / seconds, produce_s, seconds)
        prefix.groups.append(names.group)
        run = run_app_backlog(
            settings.model_copy(update={"concurrency": concurrency_of(variant)}),
            engine,
            SleepHandler(sleep_s),
            n,
            (args.timeout, args.stall_timeout),
        )
        return run.as_round(round_no, n, produce_seconds=produce_s)


# -- report ----------------------------------------------------------------------------------


def summarise(results: dict[str, list[c.RoundResult]], sleep_s: float) -> list[dict[str, Any]]:
    medians = {v: c.median([r.rate for r in rs]) for v, rs in results.items()}
    base = medians.get(BASELINE)
    out = []
    for variant, rounds in results.items():
        med = medians[variant]
        ideal = ideal_rate(variant, sleep_s)
        conc = concurrency_of(variant)
        target = TARGETS.get(conc) if variant != BASELINE else None
        committed = [r.committed_seconds for r in rounds if r.committed_seconds is not None]
        out.append(
            {
                "name": variant,
                "concurrency": conc,
                "events": rounds[0].events if rounds else 0,
                "ideal_rate": ideal,
                "rounds": [asdict(r) for r in rounds],
                "median_rate": med,
                "median_seconds": c.median([r.seconds for r in rounds]),
                "median_committed_seconds": c.median(committed),
                "share_of_ideal": med / ideal if med is not None else None,
                "ratio_to_baseline": med / base if med is not None and base else None,
                "target_share_of_ideal": target,
                "meets_target": None if target is None or med is None else med / ideal >= target,
            }
        )
    return out


def render_text(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [
        *driver.header(report, "qchem-events concurrency scaling benchmark"),
        f"workload: Report events, {cfg['keys']} keys, {cfg['partitions']} partitions; "
        f"handler perform = sleep {cfg['sleep_ms']} ms, apply = no-op; "
        f"~{cfg['seconds']} s per variant at its ideal rate; {cfg['rounds']} round(s)",
        "app:      " + ", ".join(f"{k}={v}" for k, v in cfg["app_settings"].items()),
        f"baseline: {report['baseline']} = poll 1, decode, sleep, commit synchronously per record",
        "",
    ]
    rounds = cfg["rounds"]
    headers = ["variant", "events", *(f"r{i + 1} ev/s" for i in range(rounds))]
    headers += [
        "median s",
        "median ev/s",
        "ideal",
        "% ideal",
        "target",
        f"x {report['baseline'] or '-'}",
    ]
    rows = []
    for v in report["variants"]:
        target = v["target_share_of_ideal"]
        rows.append(
            [
                v["name"],
                f"{v['events']:,}",
                *c.round_rates(v, rounds),
                "-" if v["median_seconds"] is None else f"{v['median_seconds']:.1f}",
                c.fmt_rate(v["median_rate"]),
                c.fmt_rate(v["ideal_rate"]),
                "-" if v["share_of_ideal"] is None else f"{v['share_of_ideal']:.1%}",
                "-"
                if target is None
                else f">={target:.0%} " + ("ok" if v["meets_target"] else "MISS"),
                "-" if v["ratio_to_baseline"] is None else f"{v['ratio_to_baseline']:.1f}x",
            ]
        )
    lines.append(c.format_table(headers, rows))
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = driver.parser("bench.scaling", __doc__, smoke="tiny counts, 1 round (CI)")
    p.add_argument("--concurrency", default=",".join(map(str, DEFAULT_CONCURRENCY)))
    p.add_argument("--seconds", type=float, default=12.0, help="run length at the ideal rate")
    p.add_argument("--min-events", type=int, default=200)
    p.add_argument("--sleep-ms", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-baseline", dest="baseline", action="store_false")
    driver.add_limits(p, 600.0)
    args = p.parse_args(argv)
    if args.smoke:
        # One short variant each; 20 ms x 20 events is 0.4 s of waiting at concurrency 1.
        args.seconds, args.min_events, args.rounds = 0.4, 20, 1
    try:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    except ValueError:
        p.error(f"--concurrency: expected N[,N...], got {args.concurrency!r}")
    if not levels or any(n < 1 for n in levels):
        p.error("--concurrency: every level must be 1 or more")
    args.variants = ([BASELINE] if args.baseline else []) + [f"app-c{n}" for n in levels]
    if args.rounds < 1 or args.min_events < 1 or args.seconds <= 0 or args.sleep_ms <= 0:
        p.error("--rounds, --min-events, --seconds and --sleep-ms must be positive")
    return args


def measure(args: argparse.Namespace, engine: Engine) -> dict[str, Any]:
    sizes = {v: events_for(v, args) for v in args.variants}
    data = c.dataset(max(sizes.values()))
    results: dict[str, list[c.RoundResult]] = {v: [] for v in args.variants}
    for round_no, variant in driver.rounds(args.variants, args.rounds):
        result = run_round(variant, round_no, data[: sizes[variant]], args, engine)
        results[variant].append(result)
        c.warn(f"round {round_no} {variant}: {result.events} events, {result.rate:,.0f} ev/s")
    return {
        "config": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "min_events": args.min_events,
            "sleep_ms": args.sleep_ms,
            "keys": 1000,
            "partitions": c.PARTITIONS,
            "app_settings": c.app_settings_of(args, "concurrency"),  # varied per variant
            "baseline_commit": "synchronous, per record" if args.baseline else None,
        },
        "baseline": BASELINE if args.baseline else None,
        "variants": summarise(results, args.sleep_ms / 1000),
    }


def main(argv: list[str] | None = None) -> int:
    return driver.run(parse_args(argv), measure, render_text)


if __name__ == "__main__":
    sys.exit(main())
