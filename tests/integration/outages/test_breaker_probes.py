"""Circuit breakers test the dependency itself (issue 11, defect 4).

* With no traffic after an outage, the DLQ monitor probes the dependency on its own interval,
  closes the breaker and redrives the dead letters: every email delivered once.
* A half-open probe is the dependency's health check, never an event: during a long outage
  no event uses up its attempts as a probe, so none reaches the DLQ that way.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar
from tests.support.kafka import produce_events, read_all, wait_for

pytestmark = pytest.mark.integration


def test_after_an_outage_with_no_traffic_the_monitor_probes_and_redrives(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(
        update={
            "event_types": ("Email",),
            "retries_per_type": {"Email": 0},  # a failure goes to the DLQ at once
            "breaker_fail_max": 3,
            "breaker_reset_timeout_s": 1.0,
            "dlq_redrive_interval_s": 2.0,
        }
    )
    events = sample_events("Email", 3)  # exactly enough failures to open the breaker
    topic = f"{settings.topic_prefix}.email"
    smtp_sink.stop()
    with running_app(settings) as app:
        produce_events(settings.kafka_bootstrap_servers, topic, events)
        wait_for(
            lambda: len(read_all(settings.kafka_bootstrap_servers, f"{topic}.dlq")) == 3,
            timeout=60,
            message="all three emails dead-lettered",
        )
        guard = app.breakers.get("smtp")
        assert guard.state == "open"
        time.sleep(4)  # the outage goes on; nothing new arrives
        smtp_sink.start()
        assert smtp_sink.wait_for(3, timeout=30), (
            f"{len(smtp_sink.messages)} of 3 delivered; breaker {guard.state}"
        )
        assert guard.state == "closed"
    assert max(smtp_sink.count_by_event_id().values()) == 1


def test_a_long_outage_uses_up_no_attempt_on_probes(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(
        update={
            "event_types": ("Email",),
            "breaker_fail_max": 2,
            "breaker_reset_timeout_s": 0.5,
        }
    )
    events = sample_events("Email", 10)
    topic = f"{settings.topic_prefix}.email"
    smtp_sink.stop()
    with running_app(settings) as app:
        produce_events(settings.kafka_bootstrap_servers, topic, events)
        guard = app.breakers.get("smtp")
        wait_for(lambda: guard.probes >= 10, timeout=60, message="ten failed probes")
        smtp_sink.start()
        assert smtp_sink.wait_for(10, timeout=60), f"{len(smtp_sink.messages)} of 10 delivered"
    assert max(smtp_sink.count_by_event_id().values()) == 1
    # Email has 2 retries (3 attempts): an event used as a probe would have used them up.
    assert read_all(settings.kafka_bootstrap_servers, f"{topic}.dlq") == []
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status = 'dlq'") == 0
