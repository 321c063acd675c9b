"""What a fetched record becomes: `Work`, its headers read, its retry or replay identity
established, its event decoded - or the reason it is rejected, so that it goes to the DLQ with
its bytes (never an exception that would stop the listener on the same offset forever).

Runs on the poll thread (consumers/listener.py), one record at a time, in offset order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import structlog
from confluent_kafka import Message

from common.telemetry import NULL_EVENT_TELEMETRY, EventTelemetry
from consumers.work import Work, now_ms
from retry_topics import headers as rh
from retry_topics.naming import TopicNames
from schemas.codec import InvalidEvent, decode
from schemas.registry import RegistryUnavailable, WriterSchemas

log = structlog.get_logger(__name__)


class Intake:
    """Turns one event type's fetched records into work for its pipeline."""

    def __init__(
        self,
        *,
        names: TopicNames,
        max_event_bytes: int,
        max_attempt: Callable[[], int],
        writer_schemas: WriterSchemas | None = None,
        replay_key: bytes | None = None,
        telemetry: EventTelemetry = NULL_EVENT_TELEMETRY,
    ) -> None:
        self.names = names
        self.event_type = names.event_type
        self.max_event_bytes = max_event_bytes
        self.max_attempt = max_attempt  # the retry policy's, for retry headers' sanity
        self.writer_schemas = writer_schemas  # None: SCHEMA_REGISTRY_URL not set
        self.replay_key = replay_key  # verifies replay headers (storage/secrets.py)
        self.telemetry = telemetry
        self.retry_topics = {spec.name for spec in names.retry_tiers}
        self.log = log.bind(event_type=self.event_type, group=names.group)

    def bare(self, message: Message, headers: rh.Headers | None) -> Work:
        topic, partition, offset = (
            cast(str, message.topic()),
            cast(int, message.partition()),
            cast(int, message.offset()),
        )
        return Work(
            topic=topic,
            partition=partition,
            offset=offset,
            key=message.key(),
            value=message.value(),
            headers=headers,
            origin=rh.Origin(topic, partition, offset, message.timestamp()[1]),
        )

    def work(self, message: Message) -> Work:
        """The record as work: its headers read, its retry/replay identity, its event."""
        try:
            headers = rh.message_headers(message)
        except rh.UnreadableHeaders as exc:
            work = self.bare(message, headers=None)
            work.rejected = InvalidEvent("bad_headers", str(exc))
            return work
        work = self.bare(message, headers)
        if work.topic in self.retry_topics:
            self._read_retry_headers(work, headers)
        else:
            self._read_replay_headers(work, headers)
        work.schema_pending = not self.decode(work)
        return work

    def decode(self, work: Work) -> bool:
        """Decode the event (or reject it); False when the Schema Registry cannot be asked."""
        try:
            work.event = decode(
                work.value,
                work.headers,
                self.event_type,
                max_bytes=self.max_event_bytes,
                registry=self.writer_schemas,
                key=work.key,
            )
        except InvalidEvent as exc:
            work.rejected = exc
        except RegistryUnavailable:
            return False
        return True

    def _read_retry_headers(self, work: Work, headers: Any) -> None:
        try:
            info = rh.parse_retry_headers(
                headers,
                expected_origin_topic=self.names.main,
                expected_group=self.names.group,
                max_attempt=self.max_attempt(),
                now_ms=now_ms(),
            )
        except rh.BadRetryHeaders as exc:
            work.rejected = exc  # to the DLQ with the reason; its own position is its origin
            return
        work.origin = info.origin
        work.attempt = info.attempt
        work.first_failure_ms = info.first_failure_ms
        work.replay_count = info.replay_count
        work.due_ms = info.due_ms

    def _read_replay_headers(self, work: Work, headers: Any) -> None:
        """A record replayed from the DLQ keeps its origin identity (and so its dedup key) -
        when this application signed the replay; forged origin headers are not believed
        (retry_topics/headers.py, "replays this application vouches for")."""
        origin = rh.parse_origin(headers)
        if origin is not None and origin.topic == self.names.main:
            if self.replay_key is None or not rh.signed_replay(headers, self.replay_key):
                self.log.warning(
                    "replay_headers_not_trusted",
                    topic=work.topic,
                    partition=work.partition,
                    offset=work.offset,
                )
                return  # processed as the fresh event it is
            work.origin = origin
            self.telemetry.replayed()
            values = rh.as_dict(headers)
            try:
                work.replay_count = min(int(values.get(rh.REPLAY_COUNT, b"0")), 1_000_000)
            except ValueError:
                work.replay_count = 0
