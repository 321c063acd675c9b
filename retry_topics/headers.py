"""Headers carried by retry-tier and DLQ records: bounded when written, validated when read.

Every hop *replaces* the `qchem-*` headers instead of appending to them (so records never
grow hop after hop), keeps the source's own headers (bounded in number and size), and caps
the error message and stack trace. A retry record whose headers are missing, of the wrong
type, out of range or pointing somewhere impossible is not trusted: `parse_retry_headers`
raises `BadRetryHeaders` and the record goes to the DLQ with the reason.
"""

from __future__ import annotations

import hashlib
import hmac
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PREFIX = "qchem-"
ORIGIN_TOPIC = "qchem-origin-topic"
ORIGIN_PARTITION = "qchem-origin-partition"
ORIGIN_OFFSET = "qchem-origin-offset"
ORIGIN_TIMESTAMP = "qchem-origin-timestamp-ms"
GROUP = "qchem-consumer-group"
ATTEMPT = "qchem-attempt"
FIRST_FAILURE = "qchem-first-failure-ms"
DUE = "qchem-due-ms"
ERROR_CLASS = "qchem-error-class"
ERROR_MESSAGE = "qchem-error-message"
ERROR_STACK = "qchem-error-stack"
FAILURE_KIND = "qchem-failure-kind"
DLQ_REASON = "qchem-dlq-reason"
REPLAY_COUNT = "qchem-replay-count"
REPLAY_ID = "qchem-replay-id"
REPLAY_SIGNATURE = "qchem-replay-signature"

MAX_MESSAGE_BYTES = 1_000
MAX_STACK_BYTES = 4_000
MAX_FOREIGN_HEADERS = 32
MAX_FOREIGN_HEADER_BYTES = 4_096
MAX_ATTEMPT = 100
MAX_TOPIC_LENGTH = 249
# A due time further ahead than this is corrupt or hostile: the longest tier is seconds.
MAX_DUE_AHEAD_MS = 10 * 60 * 1000

Headers = list[tuple[str, bytes]]


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every time these headers carry."""
    return int(time.time() * 1000)


class BadRetryHeaders(ValueError):
    pass


class UnreadableHeaders(ValueError):
    """The client library cannot hand over the record's headers at all.

    confluent-kafka decodes header *names* as UTF-8 and raises on anything else (a name such
    as b"x-trace\\xff", which kcat or a raw-bytes producer writes happily). It offers no way to
    read the raw names, so such a record's headers are lost to us: it is dead-lettered with
    its key and value bytes and this reason, instead of stopping the listener on every start.
    """


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event first arrived: its identity (the dedup key) through retries and replays."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class RetryInfo:
    origin: Origin
    group: str
    attempt: int  # the attempt this delivery is (2 = first retry)
    first_failure_ms: int
    due_ms: int
    replay_count: int


@dataclass(frozen=True, slots=True)
class Failure:
    error_class: str
    message: str
    stack: str
    kind: str


def truncate(text: str, limit: int) -> bytes:
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data
    return data[: limit - 3].decode("utf-8", "ignore").encode() + b"..."


def foreign_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> Headers:
    """The source's own headers (not ours), bounded in number and size."""
    kept: Headers = []
    for name, value in headers or ():
        if name.startswith(PREFIX) or len(kept) >= MAX_FOREIGN_HEADERS:
            continue
        data = value or b""
        if len(name) + len(data) <= MAX_FOREIGN_HEADER_BYTES:
            kept.append((name, data))
    return kept


def build(
    *,
    source_headers: Sequence[tuple[str, bytes | None]] | None,
    origin: Origin,
    group: str,
    attempt: int,
    first_failure_ms: int,
    due_ms: int | None,
    failure: Failure,
    replay_count: int = 0,
    dlq_reason: str | None = None,
) -> Headers:
    headers = foreign_headers(source_headers)
    headers += [
        (ORIGIN_TOPIC, origin.topic.encode()),
        (ORIGIN_PARTITION, str(origin.partition).encode()),
        (ORIGIN_OFFSET, str(origin.offset).encode()),
        (ORIGIN_TIMESTAMP, str(origin.timestamp_ms).encode()),
        (GROUP, group.encode()),
        (ATTEMPT, str(attempt).encode()),
        (FIRST_FAILURE, str(first_failure_ms).encode()),
        (ERROR_CLASS, truncate(failure.error_class, 200)),
        (ERROR_MESSAGE, truncate(failure.message, MAX_MESSAGE_BYTES)),
        (ERROR_STACK, truncate(failure.stack, MAX_STACK_BYTES)),
        (FAILURE_KIND, failure.kind.encode()),
        (REPLAY_COUNT, str(replay_count).encode()),
    ]
    if due_ms is not None:
        headers.append((DUE, str(due_ms).encode()))
    if dlq_reason is not None:
        headers.append((DLQ_REASON, dlq_reason.encode()))
    return headers


# Not `message.headers()`: for a header name that is not UTF-8, confluent-kafka (2.16) returns
# a list holding a NULL item *with an exception set*. A generic C-level call checks for that
# and raises SystemError; a call site CPython 3.11 has specialised after a few hundred records
# does not, and iterating the list then segfaults the process (reproduced by
# tests/integration/consumers/test_poison_records.py). `methodcaller` always takes the
# checked path. The broken list stays cached on the message: call this once per message.
_read_headers = operator.methodcaller("headers")


def message_headers(message: Any) -> Headers | None:
    """A consumed record's headers as (name, bytes) pairs (a null value becomes b"").

    Raises `UnreadableHeaders` when the client cannot decode them (see that class)."""
    try:
        raw = _read_headers(message)
    except Exception as exc:  # SystemError over UnicodeDecodeError, from the C extension
        cause = exc.__cause__ or exc.__context__ or exc
        raise UnreadableHeaders(
            f"record headers unreadable (a header name is not UTF-8: {type(cause).__name__}); "
            "the headers are dropped, key and value kept"
        ) from None
    if not raw:
        return None
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [
        (name, value.encode() if isinstance(value, str) else (value or b""))
        for name, value in pairs
    ]


def as_dict(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, bytes]:
    """Last value wins, as a reader of a hand-edited record would expect."""
    return {name: value or b"" for name, value in headers or ()}


def _int(values: dict[str, bytes], name: str, low: int, high: int) -> int:
    raw = values.get(name)
    if raw is None:
        raise BadRetryHeaders(f"{name} missing")
    if len(raw) > 20:
        raise BadRetryHeaders(f"{name} too long")
    try:
        number = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise BadRetryHeaders(f"{name} is not an integer: {raw[:40]!r}") from None
    if not low <= number <= high:
        raise BadRetryHeaders(f"{name}={number} outside [{low}, {high}]")
    return number


def _text(values: dict[str, bytes], name: str, limit: int) -> str:
    raw = values.get(name)
    if raw is None:
        raise BadRetryHeaders(f"{name} missing")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRetryHeaders(f"{name} is not UTF-8") from None
    if not text or len(text) > limit:
        raise BadRetryHeaders(f"{name} empty or longer than {limit}")
    return text


def parse_origin(headers: Sequence[tuple[str, bytes | None]] | None) -> Origin | None:
    """The origin identity if the headers carry a valid one (a retried or replayed record)."""
    values = as_dict(headers)
    if ORIGIN_TOPIC not in values:
        return None
    try:
        return Origin(
            topic=_text(values, ORIGIN_TOPIC, MAX_TOPIC_LENGTH),
            partition=_int(values, ORIGIN_PARTITION, 0, 1_000_000),
            offset=_int(values, ORIGIN_OFFSET, 0, 2**63 - 1),
            timestamp_ms=_int(values, ORIGIN_TIMESTAMP, -1, 2**63 - 1),
        )
    except BadRetryHeaders:
        return None


def parse_retry_headers(
    headers: Sequence[tuple[str, bytes | None]] | None,
    *,
    expected_origin_topic: str,
    expected_group: str,
    max_attempt: int,
    now_ms: int,
) -> RetryInfo:
    """Validate the headers of a record read from a retry tier (see module docstring)."""
    values = as_dict(headers)
    origin_topic = _text(values, ORIGIN_TOPIC, MAX_TOPIC_LENGTH)
    if origin_topic != expected_origin_topic:
        raise BadRetryHeaders(f"origin topic {origin_topic!r} is not {expected_origin_topic!r}")
    group = _text(values, GROUP, 255)
    if group != expected_group:
        raise BadRetryHeaders(f"consumer group {group!r} is not {expected_group!r}")
    due_ms = _int(values, DUE, 0, now_ms + MAX_DUE_AHEAD_MS)
    return RetryInfo(
        origin=Origin(
            topic=origin_topic,
            partition=_int(values, ORIGIN_PARTITION, 0, 1_000_000),
            offset=_int(values, ORIGIN_OFFSET, 0, 2**63 - 1),
            timestamp_ms=_int(values, ORIGIN_TIMESTAMP, -1, 2**63 - 1),
        ),
        group=group,
        attempt=_int(values, ATTEMPT, 2, min(max_attempt, MAX_ATTEMPT)),
        first_failure_ms=_int(values, FIRST_FAILURE, 0, now_ms + MAX_DUE_AHEAD_MS),
        due_ms=due_ms,
        replay_count=_int(values, REPLAY_COUNT, 0, 1_000_000) if REPLAY_COUNT in values else 0,
    )


def redrive_headers(
    dlq_headers: Sequence[tuple[str, bytes | None]] | None,
    *,
    replay_id: str,
    key: bytes | None,
) -> Headers:
    """Headers for sending a DLQ record back to its main topic (replay or auto-redrive).

    Keeps the source's own headers and the origin identity, so the dedup key is unchanged
    and an event whose effect was in fact applied is not applied again; bumps the replay
    count so a record that fails again returns to the DLQ saying how often it was replayed;
    signs the origin and replay headers with `key` (see `signed_replay`; without a key the
    replay is processed as a fresh event, its event id still catching a true repeat).
    """
    headers = foreign_headers(dlq_headers)
    values = as_dict(dlq_headers)
    if parse_origin(dlq_headers) is not None:
        for name in (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET, ORIGIN_TIMESTAMP):
            headers.append((name, values[name]))
    try:
        previous = min(int(values.get(REPLAY_COUNT, b"0") or b"0"), 1_000_000)
    except ValueError:
        previous = 0
    headers.append((REPLAY_COUNT, str(previous + 1).encode()))
    headers.append((REPLAY_ID, replay_id.encode()))
    if key is not None:
        headers.append((REPLAY_SIGNATURE, _replay_digest(as_dict(headers), key)))
    return headers


# -- replays this application vouches for ------------------------------------------------------
#
# A record on a main topic carrying `qchem-origin-*` headers is a replay: it keeps the identity
# (and so the dedup key) of the record that first arrived. Believed blindly, those headers let
# anyone who can produce to the topic name an applied event's position and have a *different*
# event recorded as its duplicate - its effect silently skipped. So every replay this
# application writes (`dlq replay`, the DLQ monitor) is signed with a key kept in the database
# (storage/secrets.py), and the listener believes origin headers only when the signature
# verifies; otherwise the record is processed as the fresh event it claims to be (its event id
# still catches a true repeat).

_SIGNED = (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET, ORIGIN_TIMESTAMP, REPLAY_COUNT, REPLAY_ID)


def _replay_digest(values: dict[str, bytes], key: bytes) -> bytes:
    """HMAC-SHA256 over the signed fields, each length-prefixed (joining is unambiguous)."""
    message = b"".join(
        len(part).to_bytes(4, "big") + part for part in (values.get(n, b"") for n in _SIGNED)
    )
    return hmac.new(key, message, hashlib.sha256).hexdigest().encode()


def signed_replay(headers: Sequence[tuple[str, bytes | None]] | None, key: bytes) -> bool:
    """True when the origin and replay headers carry this application's valid signature."""
    values = as_dict(headers)
    given = values.get(REPLAY_SIGNATURE)
    if not given:
        return False
    return hmac.compare_digest(given, _replay_digest(values, key))
