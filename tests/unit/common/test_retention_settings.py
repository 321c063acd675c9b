"""Retention lines up (issue 11, defect 6): a dedup row outlives every copy of its event that
Kafka can still hand back - above all a DLQ record, which can be replayed for 30 days."""

from __future__ import annotations

import pytest

from common.settings import load_settings
from tests.support.config import config_error

DAY_MS = 24 * 3600 * 1000


def test_the_defaults_keep_dedup_rows_longer_than_any_record() -> None:
    s = load_settings(_env_file=None)
    # One day more than the DLQ: a record lives up to one segment (segment.ms, 1 day) past
    # its topic's retention (ops/topics.py).
    assert s.dedup_retention_days >= s.dlq_retention_days + 1
    assert s.dedup_retention_days * DAY_MS >= max(s.main_retention_ms, s.retry_retention_ms)
    assert s.event_record_retention_days >= s.dlq_retention_days


@pytest.mark.parametrize(
    ("env", "other"),
    [
        ({"DEDUP_RETENTION_DAYS": "14"}, "DLQ_RETENTION_DAYS"),  # the old default
        ({"DEDUP_RETENTION_DAYS": "30"}, "DLQ_RETENTION_DAYS"),  # no room for the segment
        ({"DLQ_RETENTION_DAYS": "90"}, "DLQ_RETENTION_DAYS"),  # the DLQ raised alone
        ({"MAIN_RETENTION_MS": str(60 * DAY_MS)}, "MAIN_RETENTION_MS"),
        ({"RETRY_RETENTION_MS": str(60 * DAY_MS)}, "RETRY_RETENTION_MS"),
    ],
)
def test_start_up_refuses_a_dedup_retention_shorter_than_a_topic_retention(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], other: str
) -> None:
    message = config_error(monkeypatch, **env)
    assert message.startswith("DEDUP_RETENTION_DAYS:")
    assert other in message


def test_a_dedup_retention_covering_the_dlq_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DLQ_RETENTION_DAYS", "90")
    monkeypatch.setenv("DEDUP_RETENTION_DAYS", "91")
    s = load_settings(_env_file=None)
    assert (s.dlq_retention_days, s.dedup_retention_days) == (90, 91)


# A bad DLQ_RETENTION_DAYS or EVENT_RECORD_RETENTION_DAYS alone: tests/unit/common/test_settings.py
# (test_a_bad_value_names_its_variable).
