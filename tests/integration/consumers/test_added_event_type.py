"""An event type added the README way ("Add an event type") runs through the real app.

Tally (tests/support/toy: its schema, payload, sample and database-only handler) is
registered at run time - nothing in the application's source names it - and the app is
started with EVENT_TYPES=Tally against the real broker and PostgreSQL: its topics are
created, valid events (JSON and Avro, and a producer's repeat of some) are applied exactly
once, and an invalid one goes to its DLQ as INVALID with its original bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings, load_settings
from retry_topics import headers as rh
from retry_topics.naming import topic_names
from schemas.codec import AVRO, encode_avro, encode_json, headers_for
from schemas.samples import sample_events
from tests.support import kafka, toy
from tests.support.app import running_app
from tests.support.kafka import produce_events, produce_raw, read_all, wait_for

pytestmark = pytest.mark.integration


def count(engine: Engine, table: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def lag(settings: Settings, group: str, topic: str) -> int:
    """Records of `topic` (one partition) the group has not committed yet."""
    committed = kafka.committed_offsets(settings, group, topic)[0]
    return int(kafka.end_offsets(settings, topic)[0] - max(committed, 0))


@pytest.fixture
def tally_settings(settings: Settings, db_engine: Engine) -> Iterator[Settings]:
    """Tally registered, its table created, and settings that run it alone - loaded, so the
    settings validate EVENT_TYPES=Tally against the registry."""
    with toy.registered():
        toy.create_table(db_engine)
        try:
            loaded = load_settings(
                kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
                database_url=settings.database_url,
                topic_prefix=settings.topic_prefix,
                topic_partitions=1,  # every offset committed: no partition left empty
                commit_interval_s=settings.commit_interval_s,
                event_types="Tally",
            )
            yield loaded.model_copy(update={"metrics_port": 0})
        finally:
            toy.drop_table(db_engine)


def test_a_registered_type_is_applied_once_and_its_invalid_events_dead_lettered(
    tally_settings: Settings, db_engine: Engine
) -> None:
    settings = tally_settings
    names = topic_names(settings, toy.NAME)
    assert names.main == f"{settings.topic_prefix}.tally"
    events = sample_events(toy.NAME, 40, keys=3)
    as_json, as_avro = events[:30], events[30:]
    bad = json.loads(encode_json(events[0]))
    bad["event_id"] = "c0ffee00-0000-4000-8000-000000000001"
    bad["payload"]["amount"] = "twelve"
    bad_value = json.dumps(bad).encode()
    bootstrap = settings.kafka_bootstrap_servers
    with running_app(settings) as app:
        produce_events(bootstrap, names.main, as_json)
        produce_events(
            bootstrap, names.main, as_avro, encode=encode_avro, headers=headers_for(AVRO)
        )
        produce_events(bootstrap, names.main, events[:10])  # a producer's repeat: same ids
        produce_raw(bootstrap, names.main, [(b"counter-0", bad_value, None)])
        # 40 applied, 10 duplicates, 1 invalid: 51 event records, then every offset committed.
        wait_for(lambda: count(db_engine, "event_records") == 51, 60, message="51 records")
        wait_for(lambda: lag(settings, names.group, names.main) == 0, 30, message="committed")
        assert not app.failed.is_set(), "a listener crashed"

    totals = {c: 0 for c in ("counter-0", "counter-1", "counter-2")}
    for event in events:
        totals[event.payload.counter] += event.payload.amount
    with db_engine.connect() as conn:
        rows = conn.execute(text(f"SELECT counter, total, applied FROM {toy.TABLE}")).all()
        statuses = dict(
            conn.execute(text("SELECT status, count(*) FROM event_records GROUP BY status")).all()
        )
    assert {r.counter: r.total for r in rows} == totals
    assert sum(r.applied for r in rows) == 40  # each event once, the repeats not again
    assert statuses == {"succeeded": 40, "duplicate": 10, "invalid": 1}
    assert count(db_engine, "event_records WHERE event_type <> 'Tally'") == 0

    dlq = read_all(bootstrap, names.dlq)
    assert len(dlq) == 1
    assert (dlq[0].key(), dlq[0].value()) == (b"counter-0", bad_value)
    values = rh.as_dict(dlq[0].headers())
    assert values[rh.FAILURE_KIND] == b"invalid"
    assert b"payload.amount" in values[rh.ERROR_MESSAGE]
