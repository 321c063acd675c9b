"""Real process kills: nothing lost, nothing applied twice, offsets end where they should."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from ops.topics import create_topics
from schemas.samples import sample_events
from tests.support.app import AppProcess
from tests.support.db import scalar, wait_for_scalar
from tests.support.kafka import (
    committed_offsets,
    produce_events,
    wait_committed_to_end,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_run_then_restart_applies_every_event_exactly_once(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    create_topics(settings)
    topic = f"{settings.topic_prefix}.chemical-status"
    events = sample_events("ChemicalStatus", 3000, keys=100)
    produce_events(settings.kafka_bootstrap_servers, topic, events)
    app = AppProcess(settings, tmp_path / "app.log")
    kills = 0
    try:
        for target in (500, 1200, 2000):
            app.start()
            wait_for(
                lambda t=target: scalar(db_engine, "SELECT count(*) FROM dedup_keys") >= t,
                timeout=90,
                message=f"{target} events processed before the kill",
            )
            app.kill()
            kills += 1
        app.start()
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM dedup_keys",
            3000,
            timeout=120,
            message="all 3000 processed",
        )
        group = f"{settings.topic_prefix}-events.chemical-status"
        wait_committed_to_end(settings, group, topic, timeout=30)
        assert app.terminate() == 0
    finally:
        if app.alive():
            app.kill()
    assert kills == 3
    history = scalar(db_engine, "SELECT count(*) FROM chemical_status_history")
    distinct = scalar(db_engine, "SELECT count(DISTINCT event_id) FROM chemical_status_history")
    print(f"\nSIGKILL x{kills}: 3000 events, {history} history rows, {distinct} distinct")
    assert history == distinct == 3000  # every effect once: none lost, none twice
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM event_records WHERE status <> 'succeeded' "
            "AND status <> 'duplicate'",
        )
        == 0
    )


def test_email_redelivered_after_a_crash_before_commit_is_sent_once(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink, tmp_path: Path
) -> None:
    settings = handler_settings.model_copy(
        update={"event_types": ("Email",), "commit_interval_s": 60.0}
    )
    create_topics(settings)
    topic = f"{settings.topic_prefix}.email"
    events = sample_events("Email", 20)
    produce_events(settings.kafka_bootstrap_servers, topic, events)
    app = AppProcess(settings, tmp_path / "app.log")
    try:
        app.start()  # commits only every 60 s: the kill lands before any commit
        wait_for_scalar(
            db_engine,
            "SELECT count(*) FROM event_records",
            20,
            timeout=60,
            message="20 emails recorded",
        )
        app.kill()
        group = f"{settings.topic_prefix}-events.email"
        assert sum(o for o in committed_offsets(settings, group, topic).values() if o > 0) == 0
        app.env["COMMIT_INTERVAL_S"] = "0.2"
        app.start()  # everything is redelivered
        wait_for(
            lambda: (
                scalar(db_engine, "SELECT count(*) FROM event_records WHERE status = 'succeeded'")
                == 20
            ),
            timeout=60,
            message="20",
        )
        wait_committed_to_end(settings, group, topic, timeout=60)
        time.sleep(0.5)
        assert app.terminate() == 0
    finally:
        if app.alive():
            app.kill()
    counts = smtp_sink.count_by_event_id()
    assert set(counts) == {e.event_id for e in events}
    assert max(counts.values()) == 1  # the redelivered 20 were recognised, not resent
