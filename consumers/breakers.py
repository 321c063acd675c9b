"""Circuit breakers, one per dependency (SMTP, chemical database API), shared by listeners.

pybreaker keeps the state machine (closed -> open after `fail_max` failures -> half-open
after `reset_timeout` -> closed on a successful probe). We do not use `CircuitBreaker.call`
for the guarded call itself: it holds the breaker's lock for the whole call, which would
serialise every email of every worker behind one SMTP conversation. Instead:

* before the call, `DependencyGuard` fails fast while the breaker is open, and lets exactly
  one caller through as the probe once the reset timeout has passed (everyone else still
  fails fast, so the dependency sees at most one probe per reset timeout). A probe that
  finds the dependency still *unreachable* fails as `CircuitBreakerError`, so the event keeps
  its attempt and is held like the others; one that gets an *error answer* (an HTTP 500)
  fails as that error and uses its attempt - scenario 5: "after 3 retries, the DLQ";
* with no traffic at all nothing would ever call: `probe_now` runs the dependency's own
  health check (`probe`: an SMTP NOOP, a look-up of a made-up chemical id), so the DLQ
  monitor tests the dependency on its own interval and dead letters are redriven after an
  outage even when no new event arrives (consumers/dlq_monitor.py);
* the call runs outside any lock;
* its outcome is then fed to pybreaker (`call` of a function that returns or re-raises the
  captured outcome) so pybreaker does the counting and the transitions.

Callers see `CircuitBreakerError` while open; retry_topics/policy.py classifies it as
"dependency down": the event is held in place, no attempt used up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pybreaker

from common.errors import DependencyDownError, PermanentError

T = TypeVar("T")

STATE_VALUES = {"closed": 0, "half-open": 1, "open": 2}


class DependencyGuard:
    def __init__(
        self,
        name: str,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 5.0,
        on_state_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.name = name
        self.reset_timeout_s = reset_timeout_s
        self.probe: Callable[[], None] | None = None  # the dependency's health check
        self._probe_lock = threading.Lock()
        self._probing = False
        self.probes = 0  # calls let through while open/half-open (tests and metrics)
        listeners = [_StateListener(name, on_state_change)] if on_state_change else []
        self.breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout_s,
            # A permanent failure says nothing about the dependency's health.
            exclude=[PermanentError],
            listeners=listeners,
            name=name,
        )

    @property
    def state(self) -> str:
        return str(self.breaker.current_state)

    def is_open(self) -> bool:
        """Open and not yet due for a probe: callers should not even try."""
        if self.state != "open":
            return False
        opened_at = self.breaker._state_storage.opened_at  # pybreaker has no public getter
        return bool(
            opened_at and datetime.now(UTC) < opened_at + timedelta(seconds=self.reset_timeout_s)
        )

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        probe = False
        if self.state != "closed":
            if self.is_open():
                raise pybreaker.CircuitBreakerError(f"{self.name} circuit open")
            probe = self._start_probe()
        try:
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._feed(exc)
                if probe and isinstance(exc, DependencyDownError):
                    # Still unreachable: the event was only the breaker's probe, and keeps its
                    # attempt (held in place, like every event while the breaker is open).
                    raise pybreaker.CircuitBreakerError(f"{self.name} still down: {exc}") from exc
                raise
            self._feed(None)
            return result
        finally:
            if probe:
                self._end_probe()

    def probe_now(self) -> bool:
        """Closed after this? Runs the health probe when the breaker is due for one."""
        if self.state == "closed":
            return True
        if self.probe is None or self.is_open() or not self._start_probe(quiet=True):
            return False
        try:
            try:
                self.probe()
            except Exception as exc:
                self._feed(exc)
                return False
            self._feed(None)
            return self.state == "closed"
        finally:
            self._end_probe()

    def _start_probe(self, quiet: bool = False) -> bool:
        with self._probe_lock:
            if self._probing:
                if quiet:
                    return False
                raise pybreaker.CircuitBreakerError(f"{self.name} probe in progress")
            self._probing = True
            self.probes += 1
            return True

    def _end_probe(self) -> None:
        with self._probe_lock:
            self._probing = False

    def _feed(self, outcome: BaseException | None) -> None:
        """Let pybreaker count the outcome and move between states."""

        def replay() -> None:
            if outcome is not None:
                raise outcome

        try:
            self.breaker.call(replay)
        except pybreaker.CircuitBreakerError:
            pass  # the breaker just opened; the caller re-raises the real error
        except BaseException as exc:
            if exc is not outcome:
                raise


class _StateListener(pybreaker.CircuitBreakerListener):
    def __init__(self, name: str, callback: Callable[[str, str], None] | None) -> None:
        self.name = name
        self.callback = callback

    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        if self.callback is not None:
            self.callback(self.name, str(new_state.name))


class Breakers:
    """The process-wide registry: one guard per dependency name."""

    def __init__(
        self,
        *,
        fail_max: int = 5,
        reset_timeout_s: float = 5.0,
        on_state_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self._guards: dict[str, DependencyGuard] = {}
        self._lock = threading.Lock()
        self._fail_max = fail_max
        self._reset_timeout_s = reset_timeout_s
        self._on_state_change = on_state_change

    def get(self, name: str) -> DependencyGuard:
        with self._lock:
            guard = self._guards.get(name)
            if guard is None:
                guard = DependencyGuard(
                    name,
                    fail_max=self._fail_max,
                    reset_timeout_s=self._reset_timeout_s,
                    on_state_change=self._on_state_change,
                )
                self._guards[name] = guard
            return guard

    def all(self) -> dict[str, DependencyGuard]:
        with self._lock:
            return dict(self._guards)
