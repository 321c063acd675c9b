"""SMTP connections kept open between messages, for the Email handler (email.py).

Opening a connection (TCP, greeting, EHLO) and closing it (QUIT) cost more than the message
itself, so a connection that delivered a message goes back to the pool for the next one.

* **One thread per connection at a time**: `take` hands a connection to one caller, who gives
  it back (`give`) after a successful transaction or drops it (`discard`) after anything
  else. The pool never touches a connection that is out.
* **Bounded**: at most `max_idle` connections wait in the pool (the handler passes its
  workers' count, so each worker thread can keep one); a connection given back beyond that
  is closed.
* **Most recently used first**: under light load the surplus connections stay idle and age
  out instead of being kept warm in turn.
* **Idle connections are closed** after `idle_s` without a message, by a reaper thread (only
  alive while some connection waits), and are never handed out once older than that: a
  server drops idle clients after its own timeout (RFC 5321 suggests at least 5 minutes,
  many relays use less), and a connection it dropped costs a failed command to discover.
* `close()` (the runtime's shutdown) sends QUIT on every idle connection and makes `give`
  close what comes back later.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable
from typing import Any

# Longest a QUIT may take when the pool closes connections: a relay that stopped answering
# must not hold up the reaper or the shutdown for the whole SMTP timeout.
QUIT_TIMEOUT_S = 1.0


class Client(smtplib.SMTP):
    """An SMTP connection that knows whether a message's data has begun to go out.

    `data_started` is set when `data()` is entered, before the DATA command is written: from
    then on the server may have the message, so a failure is no longer safe to repeat on
    another connection (email.py). `sendmail` calls `data()` once per message.
    """

    data_started = False

    def data(self, msg: Any) -> tuple[int, bytes]:
        self.data_started = True
        return super().data(msg)


def quit_quietly(client: smtplib.SMTP) -> None:
    """QUIT (bounded by QUIT_TIMEOUT_S), then close; a dead or silent peer is no error."""
    try:
        if client.sock is not None:
            client.sock.settimeout(min(QUIT_TIMEOUT_S, client.timeout or QUIT_TIMEOUT_S))
        client.quit()
    except (smtplib.SMTPException, OSError):
        client.close()


class SmtpPool:
    """Idle connections, newest last, each with the monotonic time it was given back."""

    def __init__(self, connect: Callable[[], Client], idle_s: float, max_idle: int) -> None:
        self._connect = connect
        self._idle_s = idle_s
        self._max_idle = max_idle
        self._idle: list[tuple[float, Client]] = []
        self._cond = threading.Condition()
        self._reaper: threading.Thread | None = None
        self._closed = False

    def take(self, *, fresh: bool = False) -> tuple[Client, bool]:
        """A connection and whether it was used before (True: it came from the pool).

        `fresh` skips the pool. A new connection is opened outside the lock; its failures
        (smtplib.SMTPConnectError, OSError) are the caller's to classify."""
        expired: list[Client] = []
        reused: Client | None = None
        with self._cond:
            if not fresh and self._idle:
                given_at, newest = self._idle.pop()
                if time.monotonic() - given_at < self._idle_s:
                    reused = newest
                else:
                    # The newest is past its time, so are all older ones (reaper not yet run).
                    expired = [newest, *(client for _, client in self._idle)]
                    self._idle.clear()
        for client in expired:
            client.close()  # no QUIT: the server has likely dropped it already
        if reused is not None:
            reused.data_started = False
            return reused, True
        return self._connect(), False

    def give(self, client: Client) -> None:
        """Back to the pool after a successful transaction (no RSET needed after DATA)."""
        with self._cond:
            keep = not self._closed and self._idle_s > 0 and len(self._idle) < self._max_idle
            if keep:
                self._idle.append((time.monotonic(), client))
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap, name="smtp-idle-reaper", daemon=True
                    )
                    self._reaper.start()
        if not keep:
            quit_quietly(client)

    def discard(self, client: Client) -> None:
        """Drop a connection after a failure: its state is unknown, so it is never reused."""
        client.close()

    def idle_count(self) -> int:
        with self._cond:
            return len(self._idle)

    def close(self) -> None:
        """QUIT every idle connection and stop the reaper; later `give`s close theirs."""
        with self._cond:
            self._closed = True
            idle = [client for _, client in self._idle]
            self._idle.clear()
            reaper, self._reaper = self._reaper, None
            self._cond.notify_all()
        for client in idle:
            quit_quietly(client)
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join(timeout=QUIT_TIMEOUT_S * 2)

    def _reap(self) -> None:
        """Close connections idle for `idle_s`; end when none waits (`give` starts another)."""
        me = threading.current_thread()
        while True:
            with self._cond:
                while True:
                    if self._closed or not self._idle or self._reaper is not me:
                        if self._reaper is me:
                            self._reaper = None
                        return
                    wait_s = self._idle[0][0] + self._idle_s - time.monotonic()
                    if wait_s <= 0:
                        break
                    self._cond.wait(wait_s)
                now = time.monotonic()
                cut = next(
                    (i for i, (at, _) in enumerate(self._idle) if now - at < self._idle_s),
                    len(self._idle),
                )
                expired = [client for _, client in self._idle[:cut]]
                del self._idle[:cut]
            for client in expired:
                quit_quietly(client)
