"""Issue 17 (Low): every usage error of the CLI exits 2 with one line on stderr.

The real console script as a child process (no services: each case fails while parsing its
arguments, before anything is contacted), so argv decoding, typer's own checks and ours
are all seen as an operator sees them. Argument values are bytes: a non-UTF-8 filter is
one of the cases.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from ops.dlq import DlqUsageError, parse_time
from ops.dlq_replay import parse_rate

CLI = str(Path(sys.executable).parent / "qchem-events")
# Unreachable on purpose: a case that reached for a service would exit 1, not 2.
ENV = {
    **os.environ,
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
    "DATABASE_URL": "postgresql+psycopg2://nobody:x@127.0.0.1:1/none",
    "TOPIC_PREFIX": "usage-test",
}

USAGE_ERRORS: list[list[bytes]] = [
    [b"sample", b"Email", b"--keys", b"0"],
    [b"sample", b"Email", b"--count", b"0"],
    [b"dlq", b"replay", b"--type", b"Email", b"--rate", b"1e-300", b"--yes"],
    [b"dlq", b"replay", b"--type", b"Email", b"--rate", b"inf", b"--yes"],
    [b"dlq", b"replay", b"--type", b"Email", b"--rate", b"nan", b"--yes"],
    [b"dlq", b"replay", b"--type", b"Email", b"--rate", b"-5/s", b"--yes"],
    [b"dlq", b"purge", b"--type", b"Email", b"--older-than-days", b"99999999999999", b"--yes"],
    [b"dlq", b"purge", b"--type", b"Email", b"--older-than-days", b"-1", b"--yes"],
    [b"dlq", b"purge", b"--type", b"Email", b"--older-than-days", b"abc", b"--yes"],
    [b"dlq", b"list", b"--since", b"2026-13-01"],
    [b"dlq", b"list", b"--since", b"0001-01-01"],
    [b"dlq", b"list", b"--until", b"9999-12-31T23:59:59-23:59"],
    [b"dlq", b"list", b"--since", b"2026-11-29", b"--until", b"2026-11-28"],
    [b"dlq", b"list", b"--error-class", b"Boom\xff"],
    [b"dlq", b"list", b"--event-id", b"\xff\xfe"],
    [b"dlq", b"show", b"Email:\xff:1"],
    [b"dlq", b"list", b"--limit", b"0"],
    [b"dlq", b"list", b"--no-such-option"],
    [b"no-such-command"],
]


def run(args: list[bytes]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [CLI.encode(), *args], capture_output=True, timeout=60, env=ENV, stdin=subprocess.DEVNULL
    )


def test_every_usage_error_exits_2_with_one_line() -> None:
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, USAGE_ERRORS))
    wrong = [
        (b" ".join(args), r.returncode, r.stderr)
        for args, r in zip(USAGE_ERRORS, results, strict=True)
        if r.returncode != 2
        or len(r.stderr.splitlines()) != 1
        or not r.stderr.startswith(b"qchem-events: ")
        or r.stdout
    ]
    assert wrong == []


def test_help_and_a_good_command_still_exit_0() -> None:
    assert run([b"dlq", b"list", b"--help"]).returncode == 0
    good = run([b"sample", b"Email", b"--keys", b"1", b"--count", b"2"])
    assert (good.returncode, len(good.stdout.splitlines())) == (0, 2)


@pytest.mark.parametrize("rate", ["1e-300", "0.001", "inf", "-inf", "nan", "0", "-1", "1e7"])
def test_rates_outside_the_bounds_are_refused(rate: str) -> None:
    with pytest.raises(DlqUsageError, match="--rate"):
        parse_rate(rate)


def test_rates_inside_the_bounds_are_taken() -> None:
    assert [parse_rate(r) for r in ("0.01", "2.5/s", "1000000")] == [0.01, 2.5, 1_000_000]


@pytest.mark.parametrize(
    "text", ["1969-12-31", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59-01:00"]
)
def test_times_outside_what_a_record_can_carry_are_refused(text: str) -> None:
    with pytest.raises(DlqUsageError, match="--since"):
        parse_time(text)
