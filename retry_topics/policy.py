"""Retry policy as pure functions: what kind of failure is this, and what happens next.

    transient        -> next retry tier (1 s, 2 s, 4 s ... ADR-001), then the DLQ
    permanent        -> the DLQ at once (a handler's "never", a 4xx, a bug)
    invalid          -> the DLQ at once, status INVALID (never retried)
    dependency_down  -> held in place while the dependency's breaker is open: no attempt used
    database_down    -> held in place with capped exponential backoff: nothing can be
                        recorded, so nothing is routed anywhere until the database is back
    effect_busy      -> held in place briefly: another copy of the event is performing its
                        effect (storage/claims.py); this one ends a duplicate, or performs it
                        if that copy failed

No broker, no database: everything here is unit-tested with plain values.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from enum import StrEnum

import psycopg2.errors
from pybreaker import CircuitBreakerError
from sqlalchemy import exc as sa_exc

from common.errors import DependencyDownError, PermanentError, TransientError
from retry_topics.naming import tier_delays_ms
from schemas.codec import InvalidEvent
from storage.claims import EffectBusy

# PostgreSQL error codes that mean "this statement lost a race; try again later".
_TRANSIENT_PGCODES = {
    "55P03",  # lock_not_available (lock_timeout)
    "57014",  # query_canceled (statement_timeout)
    "40P01",  # deadlock_detected
    "40001",  # serialization_failure
}
# ... and those that mean the server itself is going away or not accepting connections.
_DATABASE_DOWN_PGCODES = {"57P01", "57P02", "57P03", "53300", "08000", "08003", "08006"}


def _pgcode(orig: BaseException | None) -> str | None:
    """The SQLSTATE of a driver error (psycopg2 sets it per instance, and per class)."""
    code = getattr(orig, "pgcode", None)
    if code is None and orig is not None:
        for known in _TRANSIENT_PGCODES | _DATABASE_DOWN_PGCODES:
            if isinstance(orig, psycopg2.errors.lookup(known)):
                return known
    return code


class FailureKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    INVALID = "invalid"
    DEPENDENCY_DOWN = "dependency_down"
    DATABASE_DOWN = "database_down"
    EFFECT_BUSY = "effect_busy"


def classify(error: BaseException) -> FailureKind:
    if isinstance(error, InvalidEvent):
        return FailureKind.INVALID
    if isinstance(error, EffectBusy):
        return FailureKind.EFFECT_BUSY
    if isinstance(error, CircuitBreakerError):
        return FailureKind.DEPENDENCY_DOWN
    if isinstance(error, PermanentError):
        return FailureKind.PERMANENT
    # A dependency refusing connections is transient until its breaker opens (scenario 2:
    # attempts 1, 2, 3, then the DLQ when the breaker never opened).
    if isinstance(error, TransientError | DependencyDownError):
        return FailureKind.TRANSIENT
    if isinstance(error, sa_exc.TimeoutError):  # pool exhausted past DB_POOL_TIMEOUT_S
        return FailureKind.DATABASE_DOWN
    if isinstance(error, sa_exc.PendingRollbackError):  # a connection lost mid-transaction
        return FailureKind.DATABASE_DOWN
    if isinstance(error, sa_exc.DBAPIError):
        pgcode = _pgcode(error.orig)
        if pgcode in _TRANSIENT_PGCODES:
            return FailureKind.TRANSIENT
        if (
            error.connection_invalidated
            or pgcode in _DATABASE_DOWN_PGCODES
            or isinstance(error, sa_exc.InterfaceError)
            or (isinstance(error, sa_exc.OperationalError) and pgcode is None)
        ):
            return FailureKind.DATABASE_DOWN
        return FailureKind.PERMANENT  # constraint violations, bad SQL: retrying won't help
    if isinstance(error, TimeoutError | socket.timeout | ConnectionError):
        return FailureKind.TRANSIENT
    return FailureKind.PERMANENT  # a bug: retrying a KeyError three times helps nobody


def database_down(error: BaseException) -> bool:
    """The one definition of "the database is unavailable" (the writer is given it, so that it
    tells a lost connection from a statement's own error such as a lock timeout)."""
    return classify(error) is FailureKind.DATABASE_DOWN


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 3  # retry tiers before the DLQ (attempts = retries + 1)
    jitter: float = 0.1  # up to +10% on top of the tier delay, never earlier


@dataclass(frozen=True, slots=True)
class RetryTier:
    """Produce to the retry tier with this base delay, due at `due_ms`."""

    delay_ms: int
    due_ms: int
    next_attempt: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str  # "exhausted" | "permanent" | "invalid"


@dataclass(frozen=True, slots=True)
class HoldInPlace:
    """Keep the event in flight (offset uncommitted) and try it again after `delay_s`."""

    delay_s: float


Decision = RetryTier | DeadLetter | HoldInPlace


def backoff_ms(attempt: int, policy: RetryPolicy, rng: random.Random) -> int:
    """Delay before `attempt` + 1 after `attempt` failed: 2^(attempt-1) x 1000 ms + jitter."""
    base = tier_delays_ms(attempt)[attempt - 1]
    return base + int(base * policy.jitter * rng.random())


def decide(
    kind: FailureKind,
    attempt: int,
    policy: RetryPolicy,
    *,
    now_ms: int,
    rng: random.Random,
    held_times: int = 0,
) -> Decision:
    """What to do with an event whose `attempt` (1 = first delivery) failed with `kind`."""
    if kind is FailureKind.INVALID:
        return DeadLetter("invalid")
    if kind is FailureKind.PERMANENT:
        return DeadLetter("permanent")
    if kind is FailureKind.DATABASE_DOWN:
        return HoldInPlace(hold_delay_s(held_times, rng))
    if kind is FailureKind.DEPENDENCY_DOWN:
        return HoldInPlace(hold_delay_s(held_times, rng, base_s=1.0, cap_s=5.0))
    if kind is FailureKind.EFFECT_BUSY:  # the other copy commits within milliseconds
        return HoldInPlace(hold_delay_s(held_times, rng, base_s=0.05, cap_s=2.0))
    if attempt > policy.retries:
        return DeadLetter("exhausted")
    delay = backoff_ms(attempt, policy, rng)
    return RetryTier(tier_delays_ms(attempt)[attempt - 1], now_ms + delay, attempt + 1)


def hold_delay_s(
    held_times: int, rng: random.Random, *, base_s: float = 0.25, cap_s: float = 10.0
) -> float:
    """Capped exponential backoff with full jitter for retry-in-place: spreads the retries of
    many held events so a database coming back is not hit by all of them at once."""
    ceiling = min(cap_s, base_s * (2 ** min(held_times, 16)))
    return max(base_s / 2, ceiling * rng.random())
