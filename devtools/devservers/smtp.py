"""A real SMTP server for tests and demos, with fault injection.

`SmtpSink`: an aiosmtpd server that keeps every message it receives (so duplicates are
countable by `X-Event-ID`), can refuse the next messages with a 4xx/5xx reply, and whose
`stop()` really closes the port (clients get ECONNREFUSED, the SMTP-outage scenario).
It counts the connections it accepted and holds open (so connection reuse is visible), and
can end them as a relay does: `drop_connections` (an idle timeout or a restart, with or
without a 421 first) and `hang_up_after_data` (the message taken, the reply never sent).
It listens on 127.0.0.1 only: a development aid, not a service.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from devtools.devservers.base import DevServer
from devtools.ports import LOCALHOST, free_port

log = logging.getLogger(__name__)

# What `_on_data` answers when the sink is to hang up instead of replying.
_HANG_UP = "hang up"


@dataclass(frozen=True, slots=True)
class ReceivedEmail:
    """One message the sink accepted."""

    message_id: str | None
    event_id: str | None  # the X-Event-ID header
    mail_from: str
    to: tuple[str, ...]  # envelope recipients (RCPT TO), what the server delivered to
    subject: str | None
    body: str
    received_at: float  # time.monotonic()
    raw: bytes = b""  # the DATA bytes as received: what a header-injection test must inspect


class _SinkHandler:
    """aiosmtpd hook object; everything stateful lives in the SmtpSink."""

    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._sink._on_data(envelope)
        if reply == _HANG_UP and server.transport is not None:
            server.transport.close()
            # Never answered: closing the connection cancels this session's task.
            await asyncio.get_running_loop().create_future()
        return reply

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._sink._changed:
            self._sink._quits += 1
        return "221 Bye"


class _SinkSMTP(SMTP):
    """aiosmtpd's session, telling the sink when its connection opens and closes."""

    def __init__(self, sink: SmtpSink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sink = sink

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None  # STARTTLS makes a second call on one connection
        super().connection_made(transport)
        if first:
            self._sink._session_opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self._sink._session_closed(self)


class _SinkController(Controller):
    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(_SinkHandler(sink), **kwargs)
        self._sink = sink

    def factory(self) -> SMTP:
        return _SinkSMTP(self._sink, self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        """aiosmtpd's readiness check (connect, read the greeting), its connection marked as
        not a client's: it is recorded before the greeting is read, so before `start`
        returns, and a client connecting meanwhile (a restart under load) still counts."""
        with socket.create_connection((self.hostname, self.port), 1.0) as probe:
            self._sink._ignore_peer(probe.getsockname())
            probe.recv(1024)


class SmtpSink(DevServer[Controller]):
    """A real SMTP server on `host:port` that records what it receives.

    aiosmtpd's Controller cannot listen on port 0 and cannot be restarted once stopped (its
    event loop is closed), so the sink picks a free port on the first `start()` and keeps it,
    and builds a fresh Controller on every start: stop/start simulates an outage and a
    recovery on the same address, as a client configured with that port would see it.
    """

    def __init__(
        self,
        port: int = 0,
        host: str = LOCALHOST,
        on_message: Callable[[ReceivedEmail], None] | None = None,
    ) -> None:
        self.host = host
        self._port = port
        self._on_message = on_message
        self._messages: list[ReceivedEmail] = []
        self._fail_remaining = 0
        self._fail_code = 451
        self._rejected = 0
        self._hang_ups = 0
        self._quits = 0
        self._peers: list[Any] = []  # of every connection accepted, in order
        self._ignored: set[Any] = set()  # aiosmtpd's own readiness checks
        self._sessions: set[SMTP] = set()
        self._changed = threading.Condition()

    def _listen(self) -> Controller:
        if self._port == 0:
            self._port = free_port(self.host)
        controller = _SinkController(
            self,
            hostname=self.host,
            port=self._port,
            # Without it aiosmtpd calls socket.getfqdn(), which can hang on a box whose DNS
            # does not answer.
            server_hostname="qchem-smtp-sink",
            ready_timeout=5.0,
        )
        controller.start()
        return controller

    def _close(self, listening: Controller) -> None:
        listening.stop()  # drops open sessions too

    def fail_next(self, n: int, code: int = 451) -> None:
        """Answer the DATA of the next `n` messages with `code` (4xx: defer, 5xx: reject)."""
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP failure reply is 4xx or 5xx, got {code}")
        with self._changed:
            self._fail_remaining = n
            self._fail_code = code

    def hang_up_after_data(self, n: int) -> None:
        """Take the next `n` messages (recorded, as a relay that queued them) but close the
        connection instead of replying: the sender cannot know they were delivered."""
        with self._changed:
            self._hang_ups = n

    def drop_connections(self, notice: str | None = None, timeout: float = 5.0) -> int:
        """Close every open connection, as a relay's idle timeout or restart does; first
        send `notice` (e.g. "421 4.4.2 idle timeout") when given. Returns how many were
        closed, once they are."""
        controller = self._listening
        if controller is None:
            return 0
        with self._changed:
            sessions = self._client_sessions()

        def close_all() -> None:  # on the server's event loop: transports are not thread-safe
            for session in sessions:
                transport = session.transport
                if isinstance(transport, asyncio.WriteTransport):
                    if notice is not None:
                        transport.write(f"{notice}\r\n".encode())
                    transport.close()  # after the buffered notice is written

        controller.loop.call_soon_threadsafe(close_all)
        with self._changed:
            if not self._changed.wait_for(lambda: not sessions & self._sessions, timeout):
                raise TimeoutError(f"connections still open after {timeout} s")
        return len(sessions)

    @property
    def connections(self) -> int:
        """How many connections were accepted since the sink was built (or `clear`ed)."""
        with self._changed:
            return sum(peer not in self._ignored for peer in self._peers)

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        with self._changed:
            return self._open()

    @property
    def quits(self) -> int:
        """How many sessions the client ended with QUIT."""
        with self._changed:
            return self._quits

    def wait_open_connections(self, n: int, timeout: float) -> bool:
        """Wait until exactly `n` connections are open; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._open() == n, timeout)

    @property
    def messages(self) -> list[ReceivedEmail]:
        """A snapshot of the accepted messages, oldest first."""
        with self._changed:
            return list(self._messages)

    @property
    def rejected(self) -> int:
        """How many messages were refused by `fail_next`."""
        with self._changed:
            return self._rejected

    def count_by_event_id(self) -> Counter[str | None]:
        """Accepted messages per X-Event-ID: any count above 1 is a duplicate delivery."""
        return Counter(message.event_id for message in self.messages)

    def wait_for(self, n: int, timeout: float) -> bool:
        """Wait until at least `n` messages were accepted; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._messages) >= n, timeout)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()
            self._rejected = 0
            self._peers.clear()
            self._quits = 0

    def _client_sessions(self) -> set[SMTP]:  # with self._changed held
        return {s for s in self._sessions if s.session and s.session.peer not in self._ignored}

    def _open(self) -> int:  # with self._changed held
        return len(self._client_sessions())

    def _ignore_peer(self, peer: Any) -> None:
        with self._changed:
            self._ignored.add(peer)

    def _session_opened(self, session: SMTP) -> None:
        with self._changed:
            self._peers.append(session.session.peer if session.session else None)
            self._sessions.add(session)
            self._changed.notify_all()

    def _session_closed(self, session: SMTP) -> None:
        with self._changed:
            self._sessions.discard(session)
            self._changed.notify_all()

    def _on_data(self, envelope: Envelope) -> str:
        """Runs on the aiosmtpd loop thread: the SMTP reply for one message."""
        with self._changed:
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                self._rejected += 1
                enhanced = "4.3.0" if self._fail_code < 500 else "5.7.1"
                return f"{self._fail_code} {enhanced} Simulated failure (fail_next)"
        received = _parse_email(envelope)
        with self._changed:
            self._messages.append(received)
            self._changed.notify_all()
            hang_up = self._hang_ups > 0
            self._hang_ups -= hang_up
        if self._on_message is not None:
            try:
                self._on_message(received)
            except Exception:  # a broken printer must not turn into an SMTP error
                log.exception("smtp sink on_message callback failed")
        return _HANG_UP if hang_up else "250 2.0.0 OK: queued"


def _parse_email(envelope: Envelope) -> ReceivedEmail:
    content = envelope.content
    raw = content if isinstance(content, bytes) else (content or "").encode()
    parsed = message_from_bytes(raw, policy=policy.default)
    body = ""
    if isinstance(parsed, EmailMessage):
        part = parsed.get_body(preferencelist=("plain",))
        if part is not None:
            # SMTP carries CRLF line ends; give back the text as the sender wrote it.
            body = str(part.get_content()).replace("\r\n", "\n")
    return ReceivedEmail(
        message_id=_header(parsed, "Message-ID"),
        event_id=_header(parsed, "X-Event-ID"),
        mail_from=envelope.mail_from or "",
        to=tuple(envelope.rcpt_tos),
        subject=_header(parsed, "Subject"),
        body=body,
        received_at=time.monotonic(),
        raw=raw,
    )


def _header(message: Any, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)
