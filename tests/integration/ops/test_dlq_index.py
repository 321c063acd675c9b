"""The DLQ index: written by the pipeline with the outcome, completed and pruned by the sync;
and the CLI's `dlq review` / `dlq history` on it (real app, broker, database, SMTP)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from ops.dlq_purge import delete_before, plan_time_purge
from ops.dlq_query import sync_index
from schemas.samples import sample_events
from tests.support.app import CLI, running_app, settings_env
from tests.support.db import rows
from tests.support.dead_letters import dead_lettered, names_for, produce_many
from tests.support.kafka import produce_events, read_all, wait_for

pytestmark = pytest.mark.integration


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run(
        [CLI, "dlq", *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )


def test_the_pipeline_indexes_each_dead_letter_with_its_event_record(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    names = names_for(settings, "Email")
    smtp_sink.fail_next(5, code=550)  # refused for good: straight to the DLQ
    events = sample_events("Email", 5)
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, names.main, events)
        wait_for(
            lambda: len(rows(db_engine, "SELECT 1 FROM dlq_entries")) == 5,
            timeout=60,
            message="5 dead letters indexed",
        )
    indexed = rows(
        db_engine,
        "SELECT e.dlq_partition, e.dlq_offset, e.event_id, e.indexed_by, e.error_class, "
        "e.failure_kind, r.status FROM dlq_entries e JOIN event_records r "
        "ON r.origin_topic = e.origin_topic AND r.origin_partition = e.origin_partition "
        "AND r.origin_offset = e.origin_offset",
    )
    in_topic = {
        (m.partition(), m.offset()) for m in read_all(settings.kafka_bootstrap_servers, names.dlq)
    }
    assert {(r.dlq_partition, r.dlq_offset) for r in indexed} == in_topic
    assert {r.event_id for r in indexed} == {e.event_id for e in events}
    assert {(r.indexed_by, r.error_class, r.failure_kind, r.status) for r in indexed} == {
        ("pipeline", "PermanentError", "permanent", "dlq")
    }
    assert sync_index(settings, db_engine, "Email") == 0  # nothing was missing


def test_the_sync_adds_what_reached_the_topic_otherwise_and_forgets_deleted_records(
    settings: Settings, db_engine: Engine
) -> None:
    produce_many(settings, "Report", 25, ["TimeoutError"])
    assert sync_index(settings, db_engine, "Report") == 25
    assert sync_index(settings, db_engine, "Report") == 0
    with db_engine.begin() as conn:  # a hole in the middle: only it is read again
        conn.execute(
            text("DELETE FROM dlq_entries WHERE dlq_partition = 0 AND dlq_offset IN (3, 4)")
        )
    assert sync_index(settings, db_engine, "Report") == 2
    assert len(rows(db_engine, "SELECT 1 FROM dlq_entries WHERE indexed_by = 'sync'")) == 25
    cuts = plan_time_purge(settings, "Report", int(time.time() * 1000) + 60_000)  # all older
    delete_before(settings, db_engine, "Report", cuts)
    assert rows(db_engine, "SELECT 1 FROM dlq_entries") == []
    assert sync_index(settings, db_engine, "Report") == 0


def test_cli_review_approve_reject_history(handler_settings: Settings, db_engine: Engine) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    dead_lettered(settings, "ChemicalStatus", 3, error_class="ValidationError", kind="permanent")
    with running_app(settings):
        listed = cli(settings, "review", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        first, second, third = (r["ref"] for r in json.loads(listed.stdout)["records"])
        bulk = cli(settings, "replay", "--type", "ChemicalStatus", "--yes", "--json")
        assert json.loads(bulk.stdout)["skipped_needs_review"] == 3, bulk.stderr
        ok = cli(settings, "review", "approve", first, "--reason", "CAS fixed", "--yes", "--json")
        assert ok.returncode == 0 and json.loads(ok.stdout)["state"] == "replayed", ok.stderr
        event_id = rows(
            db_engine, "SELECT event_id FROM dlq_entries WHERE dlq_offset = :o AND "
            "dlq_partition = :p", p=int(first.split(":")[1]), o=int(first.split(":")[2]),
        )[0].event_id  # fmt: skip
        wait_for(
            lambda: rows(
                db_engine, "SELECT 1 FROM chemicals WHERE status_event_id = :e", e=event_id
            ),
            timeout=60,
            message="the approved status applied",
        )
        no = cli(settings, "review", "reject", second, "--reason", "superseded")
        assert no.returncode == 0 and "rejected (superseded)" in no.stdout, no.stderr
        again = cli(settings, "review", "reject", second, "--reason", "again")
        assert again.returncode == 1 and again.stderr.count("\n") == 1
        assert "already rejected" in again.stderr
        reasonless = cli(settings, "review", "reject", third)
        assert reasonless.returncode == 2 and "reason" in reasonless.stderr
        history = json.loads(cli(settings, "history", "--ref", second, "--json").stdout)
        assert [(h["action"], h["detail"]["reason"]) for h in history] == [("reject", "superseded")]
        jobs = json.loads(cli(settings, "history", "--jobs", "--json").stdout)
        assert [j["status"] for j in jobs] == ["finished", "finished"]
        assert sorted(j["total"] for j in jobs) == [0, 1]
    assert len(rows(db_engine, "SELECT 1 FROM chemical_status_history")) == 1
