"""A real SMTP server for tests and demos, with fault injection.

`SmtpSink`: an aiosmtpd server that keeps every message it receives (so duplicates are
countable by `X-Event-ID`), can refuse the next messages with a 4xx/5xx reply, and whose
`stop()` really closes the port (clients get ECONNREFUSED, the SMTP-outage scenario).
It listens on 127.0.0.1 only: a development aid, not a service.
"""

from __future__ import annotations

import logging
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
        return self._sink._on_data(envelope)


class SmtpSink(DevServer):
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
        self._controller: Controller | None = None
        self._messages: list[ReceivedEmail] = []
        self._fail_remaining = 0
        self._fail_code = 451
        self._rejected = 0
        self._changed = threading.Condition()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen (again) on the same port; a no-op when already running."""
        if self._controller is not None:
            return
        if self._port == 0:
            self._port = free_port(self.host)
        controller = Controller(
            _SinkHandler(self),
            hostname=self.host,
            port=self._port,
            # Without it aiosmtpd calls socket.getfqdn(), which can hang on a box whose DNS
            # does not answer.
            server_hostname="qchem-smtp-sink",
            ready_timeout=5.0,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Close the port and drop open sessions: new clients get ECONNREFUSED."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(self, n: int, code: int = 451) -> None:
        """Answer the DATA of the next `n` messages with `code` (4xx: defer, 5xx: reject)."""
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP failure reply is 4xx or 5xx, got {code}")
        with self._changed:
            self._fail_remaining = n
            self._fail_code = code

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
        if self._on_message is not None:
            try:
                self._on_message(received)
            except Exception:  # a broken printer must not turn into an SMTP error
                log.exception("smtp sink on_message callback failed")
        return "250 2.0.0 OK: queued"


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
