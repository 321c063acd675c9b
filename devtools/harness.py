"""The application run in this process, for tests, scenarios and benchmarks: one harness.

`running_app` starts `ops.app.App` (the real listeners, pipeline, writer, breakers, DLQ
monitor, HTTP server), waits until it is ready, yields it and stops it, whatever happens in
between. Topics are the caller's: tests and scenarios create them with `create_topics`,
benchmarks with their own partition check.

Ready means what /readyz says (every listener a member of its group). A benchmark that times
a backlog from the moment the partitions are assigned asks for `partitions=True`: then every
listener must also hold partitions, and the harness returns the moment the last one is given
them (it waits on the listeners' `assigned` events, it does not poll).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from common.settings import Settings
from consumers.handlers.base import Handler
from ops.app import App

READY_TIMEOUT_S = 60.0


class AppNotReady(TimeoutError):
    """The application was not ready in time (or a listener died while starting)."""


def wait_ready(app: App, timeout: float = READY_TIMEOUT_S, *, partitions: bool = False) -> None:
    """Until `app.ready()`; with `partitions`, until every listener holds partitions first."""
    deadline = time.monotonic() + timeout
    if partitions:
        # On the listeners' events, not polling: returns the moment the last one is assigned
        # (a benchmark's t0). Assigned implies joined, so ready() holds at once.
        for listener in app.listeners:
            if not listener.assigned.wait(max(0.0, deadline - time.monotonic())):
                raise AppNotReady(f"partitions not assigned within {timeout:.0f} s")
        if not app.ready():
            raise AppNotReady("app.ready() is false after every listener was assigned")
        return
    while not app.ready():
        if app.failed.is_set():
            raise AppNotReady("a listener crashed while starting (see the log)")
        if time.monotonic() > deadline:
            raise AppNotReady(f"the app not ready (every listener joined) within {timeout:.0f} s")
        time.sleep(0.05)


@contextmanager
def running_app(
    settings: Settings,
    handlers: dict[str, Handler] | None = None,
    *,
    partitions: bool = False,
    timeout: float = READY_TIMEOUT_S,
) -> Iterator[App]:
    """The real application, started and ready (see the module docstring); stopped after."""
    app = App(settings, handlers=handlers)
    try:
        app.start()
        wait_ready(app, timeout, partitions=partitions)
        yield app
    finally:
        app.stop()


@contextmanager
def in_background(work: Callable[[threading.Event], None], join_s: float = 5.0) -> Iterator[None]:
    """Run `work(stop)` on a daemon thread for the length of the block; at its end set `stop`
    and wait up to `join_s` for the thread (samplers, pollers beside a running app)."""
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_s)
