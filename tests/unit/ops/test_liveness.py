"""ops.health.liveness / readiness: the decision, on stand-ins for the app and its listeners."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from common.settings import Settings
from ops.health import liveness, readiness


@dataclass
class _Book:
    partitions: list[tuple[str, int]] = field(default_factory=list)

    def owned(self) -> list[tuple[str, int]]:
        return self.partitions


@dataclass
class _Listener:
    event_type: str
    last_turn: float
    stopping: threading.Event = field(default_factory=threading.Event)
    book: _Book = field(default_factory=_Book)


class _App:
    def __init__(self, *listeners: _Listener, joined: bool = True) -> None:
        self.settings = Settings.model_construct(liveness_loop_ttl_s=30.0)
        self.listeners = list(listeners)
        self.failed = threading.Event()
        self.joined = joined

    def ready(self) -> bool:
        return self.joined


def _alive(app: Any, now: float) -> dict[str, Any]:
    return liveness(app, now=now)


def test_alive_while_every_loop_turned_within_the_ttl() -> None:
    app = _App(_Listener("Email", 100.0), _Listener("Report", 129.0))
    assert _alive(app, now=130.0) == {"alive": True}


def test_a_loop_older_than_the_ttl_is_not_alive_and_named() -> None:
    app = _App(_Listener("Email", 100.0), _Listener("Report", 129.0))
    body = _alive(app, now=130.5)
    assert body["alive"] is False
    assert body["stalled_loops_s"] == {"Email": 30.5}
    assert body["listener_crashed"] is False and body["ttl_s"] == 30.0


def test_a_stopping_listener_is_not_stalled() -> None:
    draining = _Listener("Email", 0.0)
    draining.stopping.set()
    assert _alive(_App(draining), now=1000.0) == {"alive": True}


def test_a_crashed_listener_is_not_alive_even_with_fresh_loops() -> None:
    app = _App(_Listener("Email", 100.0))
    app.failed.set()
    body = _alive(app, now=100.0)
    assert body["alive"] is False and body["listener_crashed"] is True


def test_ready_without_partitions_but_not_before_joining_or_without_the_database() -> None:
    idle = _App(_Listener("Email", 10**12))  # far in the future: fresh whatever the clock
    body = readiness(idle, database=True)  # type: ignore[arg-type]
    assert body["ready"] is True and body["partitions"] == 0
    assert readiness(idle, database=False)["ready"] is False  # type: ignore[arg-type]
    not_joined = _App(_Listener("Email", 10**12), joined=False)
    assert readiness(not_joined, database=True)["ready"] is False  # type: ignore[arg-type]
    stalled = _App(_Listener("Email", 0.0))
    assert readiness(stalled, database=True)["ready"] is False  # type: ignore[arg-type]
