"""Fault (d): the Kafka broker SIGKILLed (`infra/kafka.sh kill`) and restarted mid-run.

The broker is shared with every other test: the outage is kept to a few seconds, the test
waits for the broker to answer again before it asserts anything, and leaves it running.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from tests.support.app import running_app
from tests.support.faults import (
    KAFKA_PIDFILE,
    SCALE,
    ensure_kafka_up,
    infra,
    interleave,
    load_events,
    local_broker_answers_on,
    tagged_events,
    wait_kafka,
)
from tests.support.oracle import Oracle

RATE = 100  # events per second around the outage
DOWN_S = 3.0  # the broker stays dead this long before `kafka.sh up`


def test_broker_sigkill_and_restart_mid_run(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("ChemicalStatus", "Email")})
    bootstrap = settings.kafka_bootstrap_servers
    assert local_broker_answers_on(bootstrap), (
        "this test SIGKILLs the local broker of infra/kafka.sh; "
        f"KAFKA_BOOTSTRAP_SERVERS={bootstrap} is not it (pid file {KAFKA_PIDFILE})"
    )
    outages = min(3, max(1, round(SCALE)))
    tag = settings.topic_prefix
    statuses = tagged_events("ChemicalStatus", int(RATE * 60 * outages), tag=tag, keys=200)
    emails = tagged_events("Email", len(statuses) // 5, tag=tag)
    events = interleave(statuses, emails, every=5)
    oracle = Oracle(settings, db_engine, name="broker-kill", smtp=smtp_sink, must_succeed={"Email"})
    recoveries: list[float] = []
    started = time.monotonic()
    try:
        with running_app(settings) as app:
            load = load_events(settings, events, RATE)
            for _ in range(outages):
                time.sleep(3.0)  # a steady state first
                infra("kafka.sh", "kill")
                killed = time.monotonic()
                time.sleep(DOWN_S)
                infra("kafka.sh", "up")
                wait_kafka(bootstrap)
                recoveries.append(time.monotonic() - killed)
            time.sleep(2.0)
            back = time.monotonic()
            load.stop()
            oracle.expect(record.tag for record in load.join())
            drain_s = oracle.wait_drained(back, timeout=150)
            assert not app.failed.is_set(), "a listener crashed"
    finally:
        ensure_kafka_up(bootstrap)
    report = oracle.check(faults=outages, drain_s=drain_s)
    report.extra.update(
        broker_down_s=round(max(recoveries), 1), total_s=round(time.monotonic() - started, 1)
    )
    print("\n" + report.summary())
    report.assert_clean()
