"""What every benchmark's `main` shares: its options, the machine, the rounds, the report.

A benchmark module supplies three things and calls `run`:

    def parse_args(argv):                      # driver.parser() + its own options
        p = driver.parser("bench.mine", __doc__, smoke="100 events, 1 round (CI)")
        p.add_argument("--events", type=int, default=1000)
        args = p.parse_args(argv)
        ...
    def measure(args, engine) -> dict:         # the report's body: config, variants, ...
        for round_no, variant in driver.rounds(VARIANTS, args.rounds): ...
    def render(report) -> str:                 # the text form; driver.header(report) starts it

    def main(argv=None) -> int:
        return driver.run(parse_args(argv), measure, render)

`run` migrates the database, reads the machine's facts before the measurement (and the load
average after it), and prints the report - `command` and `machine` first, then the body - as
JSON with --json, else as `render` writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy.engine import Engine

from bench import common as c

T = TypeVar("T")
Measure = Callable[[argparse.Namespace, Engine], dict[str, Any]]


def parser(module: str, doc: str | None, *, smoke: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --smoke (what it means: `smoke`), --json, and the
    services (--bootstrap, --database-url, defaulting to the environment)."""
    p = argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--smoke", action="store_true", help=smoke)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", c.DEFAULT_BOOTSTRAP)
    )
    p.add_argument("--database-url", default=os.environ.get("DATABASE_URL", c.DEFAULT_DATABASE_URL))
    return p


def add_limits(
    p: argparse.ArgumentParser, timeout: float, *, stall: bool = True, what: str = "round"
) -> None:
    """--timeout (seconds per `what` at most), --stall-timeout (with `stall`), --keep-topics."""
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds per {what} at most")
    if stall:
        p.add_argument("--stall-timeout", type=float, default=60.0, help="seconds without progress")
    p.add_argument("--keep-topics", action="store_true")


def rounds(variants: Sequence[T], count: int) -> Iterator[tuple[int, T]]:
    """(round number, variant): every variant once a round, the order rotated each round, so
    that noise (a neighbour's load, a warm cache) hits all of them alike."""
    for round_no in range(1, count + 1):
        shift = (round_no - 1) % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            yield round_no, variant


def header(report: dict[str, Any], title: str) -> list[str]:
    """The text report's first lines: the title, command, machine, versions, services."""
    return [title, *c.machine_lines(report)]


def run(
    args: argparse.Namespace,
    measure: Measure,
    render: Callable[[dict[str, Any]], str],
    *,
    log_level: str = "WARNING",
) -> int:
    """Prepare the database, measure, print the report (see the module docstring)."""
    engine = c.prepared_engine(args.database_url, log_level)
    try:
        machine = c.machine_info(engine, args.database_url, args.bootstrap)
        body = measure(args, engine)
    finally:
        engine.dispose()
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {"command": " ".join(getattr(sys, "orig_argv", sys.argv)), "machine": machine}
    report.update(body)
    print(json.dumps(report, indent=2, default=str) if args.json else render(report))
    return 0
