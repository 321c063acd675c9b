"""The dependency guard: fail fast while open, one probe per reset timeout, no global lock."""

from __future__ import annotations

import threading
import time

import pybreaker
import pytest

from common.errors import DependencyDownError, PermanentError, TransientError
from consumers.breakers import DependencyGuard


def _fail() -> None:
    raise TransientError("500")


def test_opens_after_fail_max_and_fails_fast_without_calling() -> None:
    guard = DependencyGuard("api", fail_max=3, reset_timeout_s=60)
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise TransientError("500")

    for _ in range(3):
        with pytest.raises(TransientError):
            guard.call(failing)
    assert guard.state == "open"
    with pytest.raises(pybreaker.CircuitBreakerError):
        guard.call(failing)
    assert calls == 3


def test_one_probe_after_the_reset_timeout_then_closed_on_success() -> None:
    guard = DependencyGuard("api", fail_max=1, reset_timeout_s=0.2)
    with pytest.raises(TransientError):
        guard.call(_fail)
    time.sleep(0.25)
    entered = threading.Event()
    release = threading.Event()

    def slow_ok() -> str:
        entered.set()
        release.wait(2)
        return "ok"

    results: list[str] = []
    probe = threading.Thread(target=lambda: results.append(guard.call(slow_ok)))
    probe.start()
    assert entered.wait(2)
    with pytest.raises(pybreaker.CircuitBreakerError):  # a second caller during the probe
        guard.call(lambda: "not called")
    release.set()
    probe.join(2)
    assert results == ["ok"]
    assert guard.state == "closed"
    assert guard.probes == 1


def test_permanent_errors_do_not_open_the_breaker() -> None:
    guard = DependencyGuard("smtp", fail_max=2, reset_timeout_s=60)

    def reject() -> None:
        raise PermanentError("550 no such user")

    for _ in range(5):
        with pytest.raises(PermanentError):
            guard.call(reject)
    assert guard.state == "closed"


def test_calls_run_in_parallel() -> None:
    """pybreaker's own call() would serialise these behind its lock."""
    guard = DependencyGuard("smtp")
    barrier = threading.Barrier(5, timeout=2)
    threads = [threading.Thread(target=guard.call, args=(barrier.wait,)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3)
    assert not barrier.broken


def test_a_probe_event_that_finds_the_dependency_unreachable_keeps_its_attempt() -> None:
    guard = DependencyGuard("smtp", fail_max=1, reset_timeout_s=0.05)

    def unreachable() -> None:
        raise DependencyDownError("smtp", "connection refused")

    with pytest.raises(DependencyDownError):  # closed: an ordinary failure, an attempt
        guard.call(unreachable)
    time.sleep(0.06)
    # The probe: still unreachable -> CircuitBreakerError (held in place, no attempt used).
    with pytest.raises(pybreaker.CircuitBreakerError):
        guard.call(unreachable)
    time.sleep(0.06)
    # An error *answer* to the probe (scenario 5's HTTP 500) is the event's own failure.
    with pytest.raises(TransientError):
        guard.call(_fail)
    assert guard.state == "open" and guard.probes == 2


def test_probe_now_closes_the_breaker_without_any_traffic() -> None:
    guard = DependencyGuard("api", fail_max=1, reset_timeout_s=0.05)
    guard.probe = lambda: None
    with pytest.raises(TransientError):
        guard.call(_fail)
    assert not guard.probe_now()  # open, not yet due
    time.sleep(0.06)
    assert guard.probe_now() and guard.state == "closed"
