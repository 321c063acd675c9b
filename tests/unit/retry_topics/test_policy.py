"""Retry policy: classification and decisions, pure."""

from __future__ import annotations

import random

import psycopg2.errors
import pybreaker
import pytest
from sqlalchemy import exc as sa_exc

from common.errors import DependencyDownError, PermanentError, TransientError
from retry_topics.policy import (
    DeadLetter,
    FailureKind,
    HoldInPlace,
    RetryPolicy,
    RetryTier,
    backoff_ms,
    classify,
    decide,
    hold_delay_s,
)
from schemas.codec import InvalidEvent
from storage.claims import EffectBusy


def _db_error(orig: Exception, cls: type = sa_exc.OperationalError) -> Exception:
    return cls("SELECT 1", {}, orig)


def _pg(cls: type) -> Exception:
    return cls()  # psycopg2 error classes carry their pgcode on the class


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidEvent("bad_json", "x"), FailureKind.INVALID),
        (PermanentError("404"), FailureKind.PERMANENT),
        (TransientError("503"), FailureKind.TRANSIENT),
        (DependencyDownError("smtp", "refused"), FailureKind.TRANSIENT),
        (pybreaker.CircuitBreakerError("open"), FailureKind.DEPENDENCY_DOWN),
        (TimeoutError(), FailureKind.TRANSIENT),
        (TimeoutError(), FailureKind.TRANSIENT),
        (ConnectionResetError(), FailureKind.TRANSIENT),
        (KeyError("bug"), FailureKind.PERMANENT),
        (sa_exc.TimeoutError("pool exhausted"), FailureKind.DATABASE_DOWN),
        (_db_error(_pg(psycopg2.errors.LockNotAvailable)), FailureKind.TRANSIENT),
        (_db_error(_pg(psycopg2.errors.QueryCanceled)), FailureKind.TRANSIENT),
        (_db_error(_pg(psycopg2.errors.DeadlockDetected)), FailureKind.TRANSIENT),
        (_db_error(_pg(psycopg2.errors.AdminShutdown)), FailureKind.DATABASE_DOWN),
        (
            _db_error(psycopg2.OperationalError("server closed the connection")),
            FailureKind.DATABASE_DOWN,
        ),
        (
            _db_error(_pg(psycopg2.errors.UniqueViolation), sa_exc.IntegrityError),
            FailureKind.PERMANENT,
        ),
    ],
)
def test_classify(error: Exception, kind: FailureKind) -> None:
    assert classify(error) is kind


def test_transient_failures_climb_the_tiers_then_reach_the_dlq() -> None:
    policy = RetryPolicy(retries=3)
    rng = random.Random(1)
    steps = [decide(FailureKind.TRANSIENT, a, policy, now_ms=0, rng=rng) for a in (1, 2, 3, 4)]
    assert [s.delay_ms for s in steps[:3]] == [1000, 2000, 4000]  # type: ignore[union-attr]
    assert [s.next_attempt for s in steps[:3]] == [2, 3, 4]  # type: ignore[union-attr]
    assert steps[3] == DeadLetter("exhausted")


def test_email_scenario_two_retries() -> None:
    """Scenario 2: attempts 1, 2 (after 1 s), 3 (after 2 s), then the DLQ."""
    policy = RetryPolicy(retries=2)
    rng = random.Random(0)
    assert isinstance(decide(FailureKind.TRANSIENT, 1, policy, now_ms=0, rng=rng), RetryTier)
    assert isinstance(decide(FailureKind.TRANSIENT, 2, policy, now_ms=0, rng=rng), RetryTier)
    assert decide(FailureKind.TRANSIENT, 3, policy, now_ms=0, rng=rng) == DeadLetter("exhausted")


def test_due_time_has_jitter_but_is_never_early() -> None:
    policy = RetryPolicy(retries=3, jitter=0.1)
    rng = random.Random(42)
    delays = [backoff_ms(2, policy, rng) for _ in range(500)]
    assert min(delays) >= 2000
    assert max(delays) <= 2200
    assert len(set(delays)) > 50  # really jittered


def test_permanent_and_invalid_go_to_the_dlq_at_once() -> None:
    policy = RetryPolicy()
    rng = random.Random()
    assert decide(FailureKind.PERMANENT, 1, policy, now_ms=0, rng=rng) == DeadLetter("permanent")
    assert decide(FailureKind.INVALID, 1, policy, now_ms=0, rng=rng) == DeadLetter("invalid")


def test_outages_hold_in_place_without_using_an_attempt() -> None:
    policy = RetryPolicy(retries=0)  # even with no retries left
    rng = random.Random(3)
    for kind in (FailureKind.DATABASE_DOWN, FailureKind.DEPENDENCY_DOWN):
        assert isinstance(decide(kind, 9, policy, now_ms=0, rng=rng), HoldInPlace)


def test_hold_backoff_is_capped() -> None:
    rng = random.Random(5)
    delays = [hold_delay_s(n, rng, base_s=0.25, cap_s=10) for n in range(40)]
    assert all(0.125 <= d <= 10 for d in delays)


def test_a_copy_whose_effect_another_copy_performs_waits_briefly_and_keeps_its_attempt() -> None:
    rng = random.Random(1)
    error = EffectBusy("event e is being performed by another copy")
    assert classify(error) is FailureKind.EFFECT_BUSY
    delays = [
        decide(FailureKind.EFFECT_BUSY, 1, RetryPolicy(), now_ms=0, rng=rng, held_times=n)
        for n in range(30)
    ]
    assert all(isinstance(d, HoldInPlace) for d in delays)
    assert max(d.delay_s for d in delays) <= 2.0  # type: ignore[union-attr]
    assert delays[0].delay_s <= 0.05  # type: ignore[union-attr]
