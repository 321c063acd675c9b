"""Fault (b): rolling (SIGTERM) and hard (SIGKILL) bounces of 3 consumer processes in a group.

Every Email and ChemicalLookup event is produced twice, back to back, every other second copy
on another partition (overlapping copies: a producer's retry, an overlapping replay): each
must perform its outside effect once - duplicate emails are counted at the SMTP server - and
its second record end `duplicate`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from ops.topics import create_topics
from tests.support.app import AppProcess, assert_no_crash, kill_alive
from tests.support.faults import (
    SCALE,
    BackgroundLoad,
    event_records,
    interleave,
    log_tail,
    scaled,
    tagged_events,
    with_copies,
)
from tests.support.kafka import wait_for
from tests.support.oracle import Oracle

INSTANCES = 3
PARTITIONS = 6
COPIED = {"Email", "ChemicalLookup"}  # types with an outside effect: produced twice
RATE = 150  # events per second while the bounces go on


def assignments(app: AppProcess) -> int:
    return app.log().count('"partitions_assigned"')


def start_and_wait_assigned(apps: list[AppProcess], listeners: int, timeout: float = 60) -> None:
    """Start `apps` and wait until each of their listeners received its (first) assignment."""
    before = [assignments(app) if app.log_path.exists() else 0 for app in apps]
    for app in apps:
        app.start()
    wait_for(
        lambda: all(assignments(a) >= b + listeners for a, b in zip(apps, before, strict=True)),
        timeout=timeout,
        interval=0.2,
        message="assignments",
    )


def test_rolling_and_hard_bounces_of_three_instances(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    settings = handler_settings.model_copy(
        update={
            "event_types": ("ChemicalStatus", "Email", "ChemicalLookup"),
            "topic_partitions": PARTITIONS,
        }
    )
    create_topics(settings)
    rounds = min(5, max(1, round(SCALE)))  # "a few" bounces per kind; 5 rounds at soak
    tag = settings.topic_prefix
    # More than the bounces can use: the load runs until the last bounce, then stops.
    statuses = tagged_events("ChemicalStatus", scaled(10_000), tag=tag, keys=300)
    emails = tagged_events("Email", scaled(2_000), tag=tag)
    lookups = tagged_events("ChemicalLookup", scaled(1_000), tag=tag)
    events = interleave(interleave(statuses, emails, every=5), lookups, every=10)
    oracle = Oracle(
        settings,
        db_engine,
        name="bounces",
        smtp=smtp_sink,
        must_succeed={"Email", "ChemicalLookup"},
    )
    apps = [AppProcess(settings, tmp_path / f"app{i}.log") for i in range(INSTANCES)]
    listeners = len(settings.event_types)
    started = time.monotonic()
    try:
        start_and_wait_assigned(apps, listeners)
        load = BackgroundLoad(
            settings.kafka_bootstrap_servers,
            with_copies(event_records(settings, events), COPIED, PARTITIONS),
            rate=RATE,
        ).start()
        time.sleep(1.0)
        rolling = hard = 0
        kill_times: list[float] = []
        for _ in range(rounds):
            for app in apps:  # rolling: one at a time, each back in the group before the next
                assert app.terminate() == 0, log_tail(app.log_path)
                start_and_wait_assigned([app], listeners)
                rolling += 1
            for app in apps:  # hard: SIGKILL and restart, no waiting for the group
                kill_times.append(time.monotonic())
                app.kill()
                app.start()
                hard += 1
                time.sleep(2.0)
        bounced = time.monotonic()
        load.stop()
        produced = [record.tag for record in load.join()]
        times = Counter(event.event_id for event in produced)
        unique = list({event.event_id: event for event in produced}.values())
        oracle.expect(unique)
        oracle.expect_copies(e for e in unique if times[e.event_id] > 1)
        drain_s = oracle.wait_drained(bounced, timeout=120)
        for app in apps:
            assert app.terminate() == 0, log_tail(app.log_path)
    finally:
        kill_alive(apps)
    assert_no_crash(apps)
    report = oracle.check(faults=rolling + hard, drain_s=drain_s, fault_times=kill_times)
    report.extra.update(
        rolling=rolling,
        hard=hard,
        copies=sum(oracle.copies.values()),
        total_s=round(time.monotonic() - started, 1),
    )
    print("\n" + report.summary())
    # An email sent just before a SIGKILL, whose commit the kill prevented, is sent again on
    # redelivery (RELIABILITY.md): the oracle accepts only copies that straddle a kill.
    report.assert_clean()
