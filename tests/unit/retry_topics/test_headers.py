"""Retry headers: bounded when written, validated when read, never growing hop after hop."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from retry_topics import headers as rh

NOW = 1_800_000_000_000
ORIGIN = rh.Origin("qchem.email", 2, 41, NOW - 5000)


def _build(**overrides: object) -> rh.Headers:
    args: dict[str, object] = {
        "source_headers": [("content-type", b"application/json"), ("trace", b"abc")],
        "origin": ORIGIN,
        "group": "qchem-events.email",
        "attempt": 2,
        "first_failure_ms": NOW - 1000,
        "due_ms": NOW + 1000,
        "failure": rh.Failure("TransientError", "timeout", "Traceback...", "transient"),
    }
    args.update(overrides)
    return rh.build(**args)  # type: ignore[arg-type]


def _parse(headers: rh.Headers, now: int = NOW) -> rh.RetryInfo:
    return rh.parse_retry_headers(
        headers,
        expected_origin_topic="qchem.email",
        expected_group="qchem-events.email",
        max_attempt=4,
        now_ms=now,
    )


def test_round_trip() -> None:
    info = _parse(_build())
    assert info.origin == ORIGIN
    assert (info.attempt, info.due_ms, info.first_failure_ms) == (2, NOW + 1000, NOW - 1000)


def test_headers_do_not_grow_from_hop_to_hop() -> None:
    first = _build()
    second = _build(source_headers=first, attempt=3)
    third = _build(source_headers=second, attempt=4)
    assert len(first) == len(second) == len(third)
    assert rh.as_dict(third)["trace"] == b"abc"


def test_error_text_and_stack_are_truncated() -> None:
    headers = _build(failure=rh.Failure("E" * 999, "m" * 10_000, "s" * 100_000, "transient"))
    values = rh.as_dict(headers)
    assert len(values[rh.ERROR_MESSAGE]) <= rh.MAX_MESSAGE_BYTES
    assert len(values[rh.ERROR_STACK]) <= rh.MAX_STACK_BYTES
    assert len(values[rh.ERROR_CLASS]) <= 200


def test_foreign_headers_are_bounded() -> None:
    many = [(f"h{i}", b"v") for i in range(100)] + [("big", b"x" * 10_000)]
    kept = rh.foreign_headers(many)
    assert len(kept) == rh.MAX_FOREIGN_HEADERS
    assert ("big", b"x" * 10_000) not in kept


@pytest.mark.parametrize(
    ("name", "value", "why"),
    [
        (rh.ATTEMPT, b"-1", "outside"),
        (rh.ATTEMPT, b"0", "outside"),
        (rh.ATTEMPT, b"99", "outside"),
        (rh.ATTEMPT, b"two", "not an integer"),
        (rh.DUE, str(NOW + 3_600_000).encode(), "outside"),  # an hour ahead: hostile
        (rh.DUE, b"-5", "outside"),
        (rh.ORIGIN_TOPIC, b"qchem.report", "is not"),
        (rh.GROUP, b"someone-else", "is not"),
        (rh.ORIGIN_PARTITION, b"\xff", "not an integer"),
        (rh.ORIGIN_OFFSET, b"1" * 40, "too long"),
    ],
)
def test_hostile_values_are_rejected_with_a_reason(name: str, value: bytes, why: str) -> None:
    headers = [(n, v) for n, v in _build() if n != name] + [(name, value)]
    with pytest.raises(rh.BadRetryHeaders, match=why):
        _parse(headers)


def test_missing_headers_are_rejected() -> None:
    with pytest.raises(rh.BadRetryHeaders, match="missing"):
        _parse([("content-type", b"application/json")])


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [
                    rh.ATTEMPT,
                    rh.DUE,
                    rh.ORIGIN_TOPIC,
                    rh.GROUP,
                    rh.ORIGIN_OFFSET,
                    rh.ORIGIN_PARTITION,
                    "x",
                ]
            ),
            st.one_of(st.none(), st.binary(max_size=30)),
        ),
        max_size=20,
    )
)
def test_any_headers_parse_or_raise_bad_retry_headers(
    headers: list[tuple[str, bytes | None]],
) -> None:
    try:
        info = _parse(headers)  # type: ignore[arg-type]
    except rh.BadRetryHeaders:
        return
    assert 2 <= info.attempt <= 4 and info.due_ms <= NOW + rh.MAX_DUE_AHEAD_MS


def test_redrive_headers_keep_the_origin_and_count_replays() -> None:
    dlq = _build(dlq_reason="exhausted", replay_count=1)
    again = rh.redrive_headers(dlq, replay_id="r1", key=KEY)
    values = rh.as_dict(again)
    assert rh.parse_origin(again) == ORIGIN
    assert values[rh.REPLAY_COUNT] == b"2" and values[rh.REPLAY_ID] == b"r1"
    assert rh.ATTEMPT not in values and rh.DUE not in values  # a fresh start on the main topic


class _UnreadableMessage:
    """What confluent-kafka does for a header name that is not UTF-8."""

    def headers(self) -> None:
        try:
            b"x-trace\xff".decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SystemError("returned a result with an exception set") from exc


def test_unreadable_headers_are_a_typed_error_not_a_crash() -> None:
    with pytest.raises(rh.UnreadableHeaders, match="not UTF-8"):
        rh.message_headers(_UnreadableMessage())


KEY = b"k" * 32


def test_a_replay_signed_with_the_key_verifies_and_a_forged_one_does_not() -> None:
    signed = rh.redrive_headers(_build(replay_count=1), replay_id="r1", key=KEY)
    assert rh.signed_replay(signed, KEY)
    assert not rh.signed_replay(signed, b"x" * 32)  # another key
    assert not rh.signed_replay(rh.redrive_headers(_build(), replay_id="r1", key=None), KEY)
    for name, value in [
        (rh.ORIGIN_OFFSET, b"999"),  # naming another (applied) record
        (rh.ORIGIN_TOPIC, b"other"),
        (rh.REPLAY_COUNT, b"0"),  # resetting the replay cap
        (rh.REPLAY_ID, b"r2"),
    ]:
        forged = [(n, v) for n, v in signed if n != name] + [(name, value)]
        assert not rh.signed_replay(forged, KEY), name
    # A second replay of a replay is signed again, not carrying the old signature along.
    again = rh.redrive_headers(signed, replay_id="r3", key=KEY)
    assert [n for n, _ in again].count(rh.REPLAY_SIGNATURE) == 1
    assert rh.signed_replay(again, KEY)
