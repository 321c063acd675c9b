"""Dependencies really going down: SMTP stopped, PostgreSQL restarted, the API failing."""

from __future__ import annotations

import itertools
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import ChemicalApiServer, SmtpSink
from retry_topics import headers as rh
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar
from tests.support.kafka import produce_events, read_all, wait_for
from tests.support.services import ROOT

pytestmark = pytest.mark.integration


def tolerant_scalar(engine: Engine, sql: str) -> Any:
    """The same, returning None while the database is down."""
    try:
        return scalar(engine, sql)
    except Exception:
        return None


def test_smtp_outage_every_email_delivered_exactly_once(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    """Scenario 2: the SMTP server goes down for maintenance, 50 emails arrive, it returns."""
    settings = handler_settings.model_copy(
        update={
            "event_types": ("Email",),
            "breaker_fail_max": 5,
            "breaker_reset_timeout_s": 1.0,
            "dlq_redrive_interval_s": 2.0,
        }
    )
    events = sample_events("Email", 50)
    smtp_sink.stop()
    with running_app(settings) as app:
        started = time.monotonic()
        produce_events(settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.email", events)
        time.sleep(5)  # the maintenance window
        guard = app.breakers.get("smtp")
        state_during_outage = guard.state
        smtp_sink.start()
        recovered = time.monotonic()
        assert smtp_sink.wait_for(50, timeout=60), f"only {len(smtp_sink.messages)} delivered"
        drained = time.monotonic()
        time.sleep(1)  # nothing more may arrive
    counts = smtp_sink.count_by_event_id()
    assert set(counts) == {e.event_id for e in events}
    assert max(counts.values()) == 1
    assert state_during_outage in ("open", "half-open")
    dlq = read_all(
        settings.kafka_bootstrap_servers, f"{settings.topic_prefix}.email.dlq", timeout=3
    )
    print(
        f"\nSMTP outage: 50 emails, breaker {state_during_outage} during the outage, "
        f"{guard.probes} probes, {len(dlq)} via the DLQ monitor, drained "
        f"{drained - recovered:.1f}s after recovery ({drained - started:.1f}s in all)"
    )


def test_postgres_restart_mid_run_loses_nothing_and_routes_nothing(
    settings: Settings, db_engine: Engine
) -> None:
    """Scenario 3 / DB outage: the database really stops and starts during 2,000 events."""
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    events = sample_events("ChemicalStatus", 2000, keys=200)
    main = f"{settings.topic_prefix}.chemical-status"
    postgres = str(ROOT / "infra" / "postgres.sh")
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, main, events)
        wait_for(
            lambda: (tolerant_scalar(db_engine, "SELECT count(*) FROM dedup_keys") or 0) >= 300,
            timeout=60,
            message="300 processed before the outage",
        )
        subprocess.run([postgres, "stop"], check=True, capture_output=True, timeout=60)
        stopped = time.monotonic()
        time.sleep(5)
        subprocess.run([postgres, "start"], check=True, capture_output=True, timeout=60)
        restarted = time.monotonic()
        wait_for(
            lambda: tolerant_scalar(db_engine, "SELECT count(*) FROM dedup_keys") == 2000,
            timeout=120,
            message="all 2000 after the restart",
        )
        drained = time.monotonic()
    history = scalar(db_engine, "SELECT count(*) FROM chemical_status_history")
    distinct = scalar(db_engine, "SELECT count(DISTINCT event_id) FROM chemical_status_history")
    assert history == distinct == 2000
    assert scalar(db_engine, "SELECT count(*) FROM event_records WHERE status='succeeded'") == 2000
    bootstrap = settings.kafka_bootstrap_servers
    for tier in ("retry-1s", "retry-2s", "retry-4s", "dlq"):
        assert read_all(bootstrap, f"{main}.{tier}", timeout=2) == [], f"{tier} not empty"
    print(
        f"\nPostgreSQL down {restarted - stopped:.1f}s: 2000/2000 once, 0 retried, 0 DLQ, "
        f"drained {drained - restarted:.1f}s after the restart"
    )


def test_api_500s_open_the_breaker_probe_once_per_reset_and_dlq_after_3_retries(
    handler_settings: Settings, db_engine: Engine, chemical_api: ChemicalApiServer
) -> None:
    """Scenario 5: the chemical database API returns 500s, then recovers."""
    reset = 1.0
    settings = handler_settings.model_copy(
        update={
            "event_types": ("ChemicalLookup",),
            "breaker_fail_max": 3,
            "breaker_reset_timeout_s": reset,
        }
    )
    main = f"{settings.topic_prefix}.chemical-lookup"
    chemical_api.set_mode("error500")
    failing = sample_events("ChemicalLookup", 4)
    with running_app(settings) as app:
        produce_events(settings.kafka_bootstrap_servers, main, failing)
        wait_for(
            lambda: (
                scalar(db_engine, "SELECT count(*) FROM event_records WHERE status = 'dlq'") == 4
            ),
            timeout=90,
            message="4 in the DLQ",
        )
        requests = [t for t, path in chemical_api.requests if path.startswith("/chemicals/")]
        assert app.breakers.get("chemical_api").state in ("open", "half-open")
        chemical_api.set_mode("ok")
        healthy = sample_events("ChemicalLookup", 5)
        produce_events(settings.kafka_bootstrap_servers, main, healthy)
        wait_for(
            lambda: scalar(db_engine, "SELECT count(*) FROM chemical_lookups") == 5,
            timeout=30,
            message="new events flow again without a restart",
        )
    assert len(requests) == 4 * 4  # 4 events x (1 + 3 retries): no extra, no fewer calls
    # After the breaker opened (3rd failure), calls are probes: at most one per reset timeout.
    probes = requests[3:]
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert min(gaps) >= reset * 0.9, f"probes closer than the reset timeout: {min(gaps):.2f}s"
    dlq = read_all(settings.kafka_bootstrap_servers, f"{main}.dlq")
    assert len(dlq) == 4
    for message in dlq:
        h = rh.as_dict(message.headers())
        assert h[rh.ATTEMPT] == b"4", "reached the DLQ before 3 retries"
        assert h[rh.DLQ_REASON] == b"exhausted"
    print(f"\nAPI 500s: {len(requests)} calls, {len(probes)} probes, min gap {min(gaps):.2f}s")
