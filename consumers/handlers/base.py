"""What a handler is (the typed errors it raises are in common/errors.py).

A handler has two halves so that exactly-once database effects do not cost one fsync each:

* `perform(event)` does the work outside the database (send an email, call an HTTP API).
  It runs on a worker thread and may be repeated if the process dies before the commit.
* `apply(conn, event, performed)` writes the handler's database effects. It runs inside the
  transaction that also inserts the dedup row and the event record (see storage/writer.py),
  possibly batched with other events' transactions under one commit, each in its own
  savepoint. It must only use `conn`.

Failures are raised as one of the errors of common/errors.py; anything else is classified by
retry_topics/policy.py (timeouts and connection resets are transient, the rest permanent).

A handler that holds resources between events (the Email handler's open SMTP connections)
may also define `close()`: the runtime calls it once on stop, after the workers were told to
end (a `perform` still running may finish after it, so `close` must leave `perform` safe).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, cast

from sqlalchemy.engine import Connection

from schemas.events import Event


def nothing_outside_the_database(self: Any, event: Event) -> None:
    """The `perform` of a handler whose whole effect is its `apply` (database only).

    Assign it (`perform = nothing_outside_the_database`) rather than writing an empty method:
    the pipeline recognises it and hands such events from the poll thread straight to the
    writer, with no worker thread in between. A subclass that overrides `perform` gets the
    worker pool back automatically."""
    return None


class Handler(Protocol):
    event_type: ClassVar[str]
    # Name of the circuit breaker guarding `perform`, or None when it touches only the DB.
    dependency: ClassVar[str | None]

    def perform(self, event: Event) -> Any:
        """Side effects outside the database; return what `apply` needs to record."""
        ...

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        """Database effects, inside the event's transaction."""
        ...


class BatchHandler(Handler, Protocol):
    """A database-only handler that can also apply many events in one go (set-based).

    `apply_batch(conn, events)` must leave the database exactly as `apply` called on each
    event in list order would (the list is in submission order: per key, offset order). The
    writer calls it for the fresh events of a transaction; if it raises, the transaction is
    rolled back and written again event by event with `apply`, so only the failing event
    fails. Only for handlers whose `perform` returns nothing (`nothing_outside_the_database`).
    """

    def apply_batch(self, conn: Connection, events: list[Event]) -> None: ...


def set_based_apply(handler: Handler) -> Callable[[Connection, list[Event]], None] | None:
    """The handler's `apply_batch` when the writer may use it instead of `apply`, else None.

    Only for database-only handlers, and only when `apply_batch` is defined at least as far
    down the class hierarchy as `apply`: a subclass that overrides `apply` alone (to add a
    check, or to inject a fault in a test) must not have its override bypassed by the
    `apply_batch` it inherited, which knows nothing of it."""
    cls = type(handler)
    if getattr(cls, "perform", None) is not nothing_outside_the_database:
        return None
    batch_owner = next((c for c in cls.__mro__ if "apply_batch" in vars(c)), None)
    apply_owner = next((c for c in cls.__mro__ if "apply" in vars(c)), None)
    if batch_owner is None or apply_owner is None or not issubclass(batch_owner, apply_owner):
        return None
    return cast(BatchHandler, handler).apply_batch
