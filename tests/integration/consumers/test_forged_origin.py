"""Origin headers on a main-topic record are believed only when this application signed them
(issue 11, defect 5): a forged origin naming an applied event must not get a different event
recorded as its "duplicate", its effect silently skipped."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from common.settings import Settings
from retry_topics import headers as rh
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.samples import sample_events
from storage.secrets import replay_signing_key
from tests.support.app import running_app
from tests.support.db import scalar, wait_for_scalar
from tests.support.kafka import (
    produce_events,
    produce_raw,
    read_all,
    wait_committed_to_end,
)

pytestmark = pytest.mark.integration


def test_forged_origin_headers_do_not_suppress_an_effect(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",), "topic_partitions": 1})
    topic = f"{settings.topic_prefix}.report"
    applied, forged = sample_events("Report", 2)
    with running_app(settings):
        produce_events(settings.kafka_bootstrap_servers, topic, [applied])
        wait_for_scalar(
            db_engine, "SELECT count(*) FROM reports", 1, timeout=30, message="the first report"
        )
        first = read_all(settings.kafka_bootstrap_servers, topic)[0]
        origin = [
            (rh.ORIGIN_TOPIC, topic.encode()),
            (rh.ORIGIN_PARTITION, str(first.partition()).encode()),
            (rh.ORIGIN_OFFSET, str(first.offset()).encode()),
            (rh.ORIGIN_TIMESTAMP, str(first.timestamp()[1]).encode()),
            (rh.REPLAY_COUNT, b"1"),
            (rh.REPLAY_ID, b"forged"),
        ]
        # Well-formed origin headers naming the applied record, on a different event; and the
        # applied event itself replayed the way the application replays (signed).
        signed = rh.redrive_headers(origin, replay_id="r1", key=replay_signing_key(db_engine))
        produce_raw(
            settings.kafka_bootstrap_servers,
            topic,
            [
                (forged.key.encode(), encode_json(forged), origin),
                (applied.key.encode(), encode_json(applied), signed),
            ],
        )
        group = topic_names(settings, "Report").group
        wait_committed_to_end(settings, group, topic, timeout=30)
    assert scalar(db_engine, "SELECT count(*) FROM reports WHERE event_id = :e", e=forged.event_id)
    assert scalar(db_engine, "SELECT count(*) FROM reports") == 2
    # The signed replay kept its origin (no row of its own: it is the first record's row);
    # the forged record got its own row, as the fresh event it is.
    assert scalar(db_engine, "SELECT count(*) FROM event_records") == 2
    assert (
        scalar(
            db_engine,
            "SELECT count(*) FROM event_records WHERE origin_offset = :o",
            o=first.offset(),
        )
        == 1
    )
