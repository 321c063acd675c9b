"""ops/dlq_replay.py: the rate argument and the headers of a replayed record (pure)."""

from __future__ import annotations

import uuid

import pytest

from ops.dlq import DlqUsageError
from ops.dlq_replay import parse_rate, replay_headers
from retry_topics import headers as rh
from tests.support.dlq import ORIGIN, dlq_headers, dlq_record

KEY = b"k" * 32


@pytest.mark.parametrize(("text", "rate"), [("100", 100.0), ("100/s", 100.0), ("2.5/s", 2.5)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0", "-3/s", "10/min", "2000000"])
def test_parse_rate_rejects_bad_rates(text: str) -> None:
    with pytest.raises(DlqUsageError, match="--rate"):
        parse_rate(text)


# -- replay headers ------------------------------------------------------------------------------


def test_replay_headers_keep_foreign_headers_and_origin_and_count_the_replay() -> None:
    replay_id = uuid.uuid4()
    r = dlq_record(headers=dlq_headers(replay_count=2))
    headers = dict(replay_headers(r, replay_id, KEY))
    assert rh.signed_replay(list(headers.items()), KEY)
    del headers[rh.REPLAY_SIGNATURE]
    assert headers == {
        "content-type": b"application/json",
        "traceparent": b"00-ab-cd-01",
        rh.ORIGIN_TOPIC: b"qchem.email",
        rh.ORIGIN_PARTITION: b"2",
        rh.ORIGIN_OFFSET: b"41",
        rh.ORIGIN_TIMESTAMP: b"1700000000000",
        rh.REPLAY_COUNT: b"3",
        rh.REPLAY_ID: str(replay_id).encode(),
    }
    assert rh.parse_origin(replay_headers(r, replay_id, KEY)) == ORIGIN


def test_replay_headers_without_a_valid_origin_carry_none() -> None:
    r = dlq_record(headers=[("content-type", b"application/json"), (rh.ORIGIN_TOPIC, b"x")])
    names = [name for name, _ in replay_headers(r, uuid.uuid4(), KEY)]
    assert names == ["content-type", rh.REPLAY_COUNT, rh.REPLAY_ID, rh.REPLAY_SIGNATURE]
