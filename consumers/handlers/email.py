"""Email: send one message per event through the configured SMTP relay.

An email cannot be taken back, and `perform` may run again if the process dies between the
send and the commit, or if the connection drops after the server accepted the message. So
every message carries the event id twice (`Message-ID: <event_id@qchem-events>` and
`X-Event-ID`) and its `Date` is the event's time: a duplicate is byte-identical and visible
at the server, where it can be de-duplicated.

Errors are mapped so the runtime reacts to the cause:

* the relay cannot be reached or talked to (refused, reset, timeout, disconnected, a
  greeting other than 220): `DependencyDownError("smtp", ...)`, which counts against the
  smtp circuit breaker;
* a 4xx reply (421, 450, 451, 452 ...): `TransientError`, retried through the tiers;
* a 5xx reply (unknown mailbox, message rejected) or a message that cannot be built:
  `PermanentError`, straight to the DLQ.
"""

from __future__ import annotations

import smtplib
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar, Final

from sqlalchemy.engine import Connection

from common.errors import DependencyDownError, HandlerError, PermanentError, TransientError
from common.settings import Settings
from schemas.events import EmailPayload, Event
from schemas.safe_text import address_problem, subject_problem

DEPENDENCY = "smtp"
# The header lines a generated message must have, each exactly once, and nothing else.
EXPECTED_HEADERS: Final = frozenset(
    {
        b"from",
        b"to",
        b"subject",
        b"date",
        b"message-id",
        b"x-event-id",
        b"content-type",
        b"content-transfer-encoding",
        b"mime-version",
    }
)


@dataclass(frozen=True, slots=True)
class EmailSent:
    """What `perform` returns: the message id, and recipients the relay refused.

    A partially refused message is *not* an error: it was delivered to the others, and a
    retry would deliver it to them a second time.
    """

    message_id: str
    refused: dict[str, int] = field(default_factory=dict)


class EmailHandler:
    """Sends the event's email. One SMTP connection per call: simple and thread-safe."""

    event_type: ClassVar[str] = "Email"
    dependency: ClassVar[str | None] = DEPENDENCY

    def __init__(self, settings: Settings) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._timeout_s = settings.smtp_timeout_s
        self._sender = settings.smtp_sender

    def build_message(self, event: Event) -> EmailMessage:
        """The message for `event`; identical every time it is built (see module docstring).

        The validator already refuses these payloads (schemas/validation.py); checking
        again here keeps an event built any other way (a replay tool, a future code path)
        from reaching the relay.
        """
        payload: EmailPayload = event.payload
        problem = address_problem(payload.to)
        if problem is not None:
            raise PermanentError(f"email recipient refused: to {problem}")
        problem = subject_problem(payload.subject)
        if problem is not None:
            raise PermanentError(f"email subject refused: it {problem}")
        message = EmailMessage()
        try:
            message["From"] = self._sender
            message["To"] = payload.to
            message["Subject"] = payload.subject
            message["Date"] = format_datetime(event.occurred_at)
            message["Message-ID"] = f"<{event.event_id}@qchem-events>"
            message["X-Event-ID"] = event.event_id
        except ValueError as exc:
            # e.g. a CR/LF in the subject (header injection): no retry will fix the payload.
            raise PermanentError(f"invalid email header: {exc}") from exc
        message.set_content(payload.body)
        return message

    def perform(self, event: Event) -> EmailSent:
        """Send the message; raise one of the handler errors on failure."""
        message = self.build_message(event)
        international = not self._sender.isascii()  # `to` is ASCII (address_problem)
        data = message.as_bytes(policy=policy.SMTPUTF8 if international else policy.SMTP)
        check_generated(data, event.payload.to)
        client: smtplib.SMTP | None = None
        try:
            client = smtplib.SMTP(self._host, self._port, timeout=self._timeout_s)
            options: tuple[str, ...] = ()
            if international:
                client.ehlo_or_helo_if_needed()
                if not client.has_extn("smtputf8"):
                    raise smtplib.SMTPNotSupportedError("the sender needs SMTPUTF8")
                options = ("SMTPUTF8", "BODY=8BITMIME")
            # The exact bytes checked above, to the one recipient: send_message would
            # generate the message again and take recipients from To/Cc/Bcc headers.
            refused = client.sendmail(self._sender, [event.payload.to], data, options)
        except (smtplib.SMTPException, OSError) as exc:
            if client is not None:
                client.close()
            raise _classify(exc) from exc
        # The message is accepted: a failing QUIT must not turn that into a retry (and so
        # a duplicate), hence close quietly.
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
        return EmailSent(
            message_id=str(message["Message-ID"]),
            refused={rcpt: code for rcpt, (code, _) in refused.items()},
        )

    def probe(self) -> None:
        """The relay's health, for the circuit breaker: connect, NOOP, QUIT - no mail sent."""
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout_s) as client:
                code, _ = client.noop()
        except (smtplib.SMTPException, OSError) as exc:
            raise _classify(exc) from exc
        if code != 250:
            raise DependencyDownError(DEPENDENCY, f"NOOP answered {code}")

    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        """Nothing to write: the runtime's event record and dedup row say it was sent."""
        return None


def _classify(exc: BaseException) -> HandlerError:
    """Map an smtplib/socket failure to the handler error the runtime acts on."""
    # Order matters: every smtplib exception is also an OSError.
    if isinstance(exc, smtplib.SMTPConnectError):
        # The relay answered the connection with something other than 220 (e.g. 421/554
        # "not accepting mail"): it is up as a socket but not as a mail service.
        return DependencyDownError(DEPENDENCY, f"greeting refused: {_reply(exc)}")
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = ", ".join(f"{rcpt}: {code}" for rcpt, (code, _) in exc.recipients.items())
        # Every recipient refused for good: permanent. Any 4xx among them: worth a retry.
        if codes and all(500 <= code < 600 for code in codes):
            return PermanentError(f"smtp recipients refused ({detail})")
        return TransientError(f"smtp recipients deferred ({detail})")
    if isinstance(exc, smtplib.SMTPResponseException):
        if 500 <= exc.smtp_code < 600:
            return PermanentError(f"smtp rejected the message: {_reply(exc)}")
        return TransientError(f"smtp deferred the message: {_reply(exc)}")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DependencyDownError(DEPENDENCY, f"server disconnected: {exc}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        # e.g. a non-ASCII address and a relay without SMTPUTF8: not going to change.
        return PermanentError(f"smtp relay cannot carry this message: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return TransientError(f"smtp error: {exc}")
    # Refused, reset, unreachable, timed out (TimeoutError is an OSError).
    return DependencyDownError(DEPENDENCY, f"{type(exc).__name__}: {exc}")


def check_generated(data: bytes, to: str) -> None:
    """Refuse generated bytes whose header section is not exactly what was built.

    Python's generator could turn an encoded word into raw CR/LF (CVE-2024-6923; the
    interpreter may lack the fix), so the bytes about to be sent are read back: every
    expected header once and no other, no bare CR or LF, and the To line is the address.
    """
    head, blank, _body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not blank or any(b"\r" in line or b"\n" in line for line in lines):
        raise PermanentError("generated email refused: its header section is malformed")
    names = [
        line.split(b":", 1)[0].strip().lower() for line in lines if line[:1] not in (b" ", b"\t")
    ]
    if len(names) != len(EXPECTED_HEADERS) or set(names) != EXPECTED_HEADERS:
        found = b", ".join(names).decode("ascii", "backslashreplace")[:300]
        raise PermanentError(f"generated email refused: unexpected header lines ({found})")
    at = names.index(b"to")
    to_value = lines[at][3:]
    for line in lines[at + 1 :]:  # a folded To line continues on indented lines
        if line[:1] not in (b" ", b"\t"):
            break
        to_value += line
    if to_value.strip() != to.encode("ascii"):
        raise PermanentError("generated email refused: the To line is not the one address")


def _reply(exc: smtplib.SMTPResponseException) -> str:
    error = exc.smtp_error
    text = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
    return f"{exc.smtp_code} {text}".strip()
