"""A listener paused for "database down" resumes when the database answers, whatever became
of the event whose failure paused it (issue 11, defect 3).

The application reaches PostgreSQL through a TCP proxy the test cuts, so only the application
loses its database. An Email event is held in place (its claim cannot be made); a second
member joins the group and takes that event's partition; the database returns; the second
member leaves. Every partition must flow again: the mark "database down" may not wait for a
write of the event that set it, which was let go when its partition moved.
"""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from pydantic import SecretStr
from sqlalchemy.engine import Engine, make_url

from common.settings import Settings
from consumers.listener import consumer_config
from devtools.devservers import SmtpSink
from devtools.kafka import kafka_config
from retry_topics.naming import topic_names
from schemas.codec import encode_json
from schemas.samples import sample_events
from tests.support.app import running_app
from tests.support.db import scalar
from tests.support.kafka import producer, wait_for
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.integration


class GroupMember:
    """A second member of the application's consumer group that only holds partitions."""

    def __init__(self, settings: Settings, event_type: str) -> None:
        names = topic_names(settings, event_type)
        self.assigned: set[tuple[str, int]] = set()
        self.consumer = Consumer(
            consumer_config(kafka_config(settings), names.group) | {"enable.auto.commit": False}
        )
        self.consumer.subscribe(names.consumed(), on_assign=self._on_assign)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)  # holds them, reads nothing, commits nothing
        self.assigned.update((p.topic, p.partition) for p in partitions)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.consumer.poll(0.1)

    def leave(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.consumer.close()


def test_the_database_mark_clears_after_the_held_partition_moved_away(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    url = make_url(handler_settings.sqlalchemy_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
    settings = handler_settings.model_copy(
        update={
            "event_types": ("Email",),
            "topic_partitions": 2,
            "database_url": SecretStr(
                url.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
            ),
        }
    )
    settings.__dict__.pop("sqlalchemy_url", None)  # a cached_property copied from the original
    topic = f"{settings.topic_prefix}.email"
    held, later = sample_events("Email", 1)[0], sample_events("Email", 11)[1:]
    members: list[GroupMember] = []
    try:
        with running_app(settings) as app:
            pipeline, listener = app.pipelines["Email"], app.listeners[0]
            proxy.cut()
            kafka = producer(settings.kafka_bootstrap_servers)
            kafka.produce(topic, key=held.key.encode(), value=encode_json(held), partition=0)
            assert kafka.flush(10) == 0
            wait_for(
                lambda: pipeline.database_down_since is not None,
                timeout=30,
                message="the listener marks the database down",
            )
            # A member joins; until it is the one holding the held event's partition, let it
            # go and try again (the assignor, not the test, chooses what moves).
            while (topic, 0) in listener.book.owned() or not members:
                if members:
                    members.pop().leave()
                    time.sleep(1)
                members.append(GroupMember(settings, "Email"))
                wait_for(lambda: members[-1].assigned, timeout=30, message="a share")
            time.sleep(11)  # the held event's next try (backoff <= 10 s) sees it is not ours
            proxy.restore()
            members.pop().leave()  # its partitions come back to the application
            wait_for(
                lambda: (topic, 0) in listener.book.owned(),
                timeout=30,
                message="partition 0 back with the application",
            )
            for n, event in enumerate(later):
                kafka.produce(
                    topic, key=event.key.encode(), value=encode_json(event), partition=n % 2
                )
            assert kafka.flush(10) == 0
            expected = {e.event_id for e in [held, *later]}
            wait_for(
                lambda: expected <= set(smtp_sink.count_by_event_id()),
                timeout=60,
                message="every email sent once the database is back (both partitions)",
            )
    finally:
        for member in members:
            member.leave()
        proxy.stop()
    assert max(smtp_sink.count_by_event_id().values()) == 1
    assert scalar(db_engine, "SELECT count(*) FROM dedup_keys") == len(later) + 1
