"""Email: send one message per event through the configured SMTP relay.

An email cannot be taken back, and `perform` may run again if the process dies between the
send and the commit, or if the connection drops after the server accepted the message. So
every message carries the event id twice (`Message-ID: <event_id@qchem-events>` and
`X-Event-ID`) and its `Date` is the event's time: a duplicate is byte-identical and visible
at the server, where it can be de-duplicated.

The bytes of an ordinary message (a plain ASCII sender, recipient and subject that fit on
their lines, a UTC time) are written directly (email_bytes.py): exactly what the email
package writes, which costs ~1 ms of CPU more. Any other message is built by the package, so
a duplicate is byte-identical whichever path made it. Either way the bytes are read back by
`check_generated` before they are sent.

Errors are mapped so the runtime reacts to the cause:

* the relay cannot be reached or talked to (refused, reset, timeout, disconnected, a
  greeting other than 220): `DependencyDownError("smtp", ...)`, which counts against the
  smtp circuit breaker;
* a 4xx reply (421, 450, 451, 452 ...): `TransientError`, retried through the tiers (but
  see below for a 421 before DATA on a reused connection);
* a 5xx reply (unknown mailbox, message rejected) or a message that cannot be built:
  `PermanentError`, straight to the DLQ.

Connections are reused (smtp_pool.py): a connection that delivered a message waits, up to
SMTP_IDLE_S, for the next one, so a message costs MAIL, RCPT and DATA rather than a TCP
connection, a greeting, EHLO and QUIT as well (SMTP_IDLE_S=0: a connection per message, as
before). A connection is reused only after a successful transaction (no RSET is needed after
DATA); after any failure it is closed, since the server's state for it is unknown. It keeps
its EHLO answer, so the SMTPUTF8 check of a non-ASCII sender costs no round trip once made.

A reused connection may have been dropped by the server while it waited (its idle timeout, a
restart, a NAT table). That shows at the first command, MAIL FROM, as a disconnection, a
reset or broken pipe, a timeout or a 421 reply. **Before DATA** nothing of the message has
reached the server, so such a failure on a *reused* connection is not the message's: it is
sent once more, within the same `perform`, on a fresh connection, whose failures are
classified as above. **From DATA on** (`Client.data_started`) the server may hold the
message, and the failure is raised exactly as it would be on a fresh connection: the message
is never sent again silently. A retry through the tiers then sends the same bytes under the
same Message-ID, visible as a duplicate at the server (RELIABILITY.md, "The duplicate-email
window"). Failures on a fresh connection are never repeated here. A dead connection found
by a timeout costs up to SMTP_TIMEOUT_S before the fresh attempt (a NAT that forgot it).
"""

from __future__ import annotations

import smtplib
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, ClassVar, Final

import structlog
from sqlalchemy.engine import Connection

from common.errors import DependencyDownError, HandlerError, PermanentError, TransientError
from common.settings import Settings
from consumers.handlers.email_bytes import message_bytes, message_id, plain_sender
from consumers.handlers.smtp_pool import Client, SmtpPool
from schemas.events import EmailPayload, Event
from schemas.safe_text import address_problem, subject_problem

log = structlog.get_logger(__name__)

DEPENDENCY = "smtp"
# One body for each transfer encoding set_content picks: 7bit, 8bit, quoted-printable, base64.
_PROBE_BODIES: Final = (
    "Hello,\n\n.a line with a leading dot\r\nbye",
    "Caf\u00e9\n",
    "An ASCII line longer than 78 characters, with a = sign, " + "x" * 40 + " \nok",
    "\u4e2d" * 40,
)
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
    """Sends the event's email over pooled SMTP connections (module docstring); thread-safe."""

    event_type: ClassVar[str] = "Email"
    dependency: ClassVar[str | None] = DEPENDENCY

    def __init__(self, settings: Settings) -> None:
        self._host = settings.smtp_host
        self._port = settings.smtp_port
        self._timeout_s = settings.smtp_timeout_s
        self._sender = settings.smtp_sender
        self._international = not self._sender.isascii()  # `to` is ASCII (address_problem)
        # A plain ASCII sender: ordinary messages are written directly (email_bytes.py).
        self._direct = direct_agrees(self._sender)
        if plain_sender(self._sender) and not self._direct:
            log.warning("email_direct_path_off", reason="the email package writes otherwise")
        # One idle connection per worker thread at most: `perform` runs on CONCURRENCY workers.
        self._pool = SmtpPool(self._connect, settings.smtp_idle_s, settings.concurrency)
        self._replaced = 0
        self._replaced_lock = threading.Lock()

    def _connect(self) -> Client:
        return Client(self._host, self._port, timeout=self._timeout_s)

    @property
    def connections_replaced(self) -> int:
        """How many reused connections were found dropped before DATA and replaced."""
        return self._replaced

    def close(self) -> None:
        """Close the idle connections (QUIT); the runtime calls it when it stops."""
        self._pool.close()

    def build_message(self, event: Event) -> EmailMessage:
        """The message for `event` as the email package builds it (see `message_data`)."""
        refuse_unsafe(event.payload)
        return _email_message(self._sender, event)

    def perform(self, event: Event) -> EmailSent:
        """Send the message; raise one of the handler errors on failure."""
        data, mid = message_data(self._sender, event, direct=self._direct)
        refused = self._send(data, event.payload.to, self._international, event.event_id)
        return EmailSent(
            message_id=mid,
            refused={rcpt: code for rcpt, (code, _) in refused.items()},
        )

    def _send(
        self, data: bytes, to: str, international: bool, event_id: str
    ) -> dict[str, tuple[int, bytes]]:
        """One transaction, on a pooled connection; once more on a fresh one only when a
        reused connection turns out dropped before DATA (module docstring)."""
        for fresh in (False, True):
            try:
                client, reused = self._pool.take(fresh=fresh)
            except (smtplib.SMTPException, OSError) as exc:
                raise _classify(exc) from exc
            try:
                refused = _transact(client, self._sender, to, data, international)
            except (smtplib.SMTPException, OSError) as exc:
                self._pool.discard(client)
                if reused and dropped_before_data(client, exc):
                    self._note_replaced(exc, event_id)
                    continue
                raise _classify(exc) from exc
            except BaseException:
                self._pool.discard(client)  # its state is unknown: never back to the pool
                raise
            # Accepted: the connection is in a clean state for the next message.
            self._pool.give(client)
            return refused
        raise AssertionError("unreachable: the fresh attempt returns or raises")

    def _note_replaced(self, exc: BaseException, event_id: str) -> None:
        with self._replaced_lock:
            self._replaced += 1
        # A timeout means a silently dropped connection (a NAT or firewall that forgot it):
        # each costs SMTP_TIMEOUT_S before the fresh connection - worth a warning, since it
        # repeats after every idle gap (then lower SMTP_IDLE_S below that idle limit).
        timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc)
        (log.warning if timed_out else log.info)(
            "smtp_connection_replaced",
            dependency=DEPENDENCY,
            event_id=event_id,
            reason=f"{type(exc).__name__}: {exc}"[:200],
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


def refuse_unsafe(payload: EmailPayload) -> None:
    """Refuse a recipient or subject that could reach another address or forge a header.

    The validator already refuses these payloads (schemas/validation.py); checking again
    here keeps an event built any other way (a replay tool, a future code path) from
    reaching the relay.
    """
    problem = address_problem(payload.to)
    if problem is not None:
        raise PermanentError(f"email recipient refused: to {problem}")
    problem = subject_problem(payload.subject)
    if problem is not None:
        raise PermanentError(f"email subject refused: it {problem}")


def message_data(sender: str, event: Event, *, direct: bool) -> tuple[bytes, str]:
    """The bytes to send for `event`, checked, and their Message-ID.

    With `direct` (only for a sender `plain_sender` accepts), an ordinary message is written
    directly (email_bytes.py), ~1 ms of CPU less; any other is built by the email package.
    Both give the same bytes, so a duplicate stays byte-identical whichever path made it.
    """
    payload: EmailPayload = event.payload
    refuse_unsafe(payload)
    data = _direct_bytes(sender, event) if direct else None
    if data is None:
        data, mid = _package_data(sender, event)
    else:
        mid = message_id(event.event_id)
    check_generated(data, payload.to)
    return data, mid


def _direct_bytes(sender: str, event: Event) -> bytes | None:
    payload: EmailPayload = event.payload
    return message_bytes(
        sender, payload.to, payload.subject, payload.body, event.event_id, event.occurred_at
    )


def _package_data(sender: str, event: Event) -> tuple[bytes, str]:
    """The message's bytes and Message-ID as the email package writes them."""
    message = _email_message(sender, event)
    data = message.as_bytes(policy=policy.SMTP if sender.isascii() else policy.SMTPUTF8)
    return data, str(message["Message-ID"])


def direct_agrees(sender: str) -> bool:
    """Whether the direct writer gives this interpreter's email package's bytes for `sender`,
    on a message of each transfer encoding with the longest header lines it writes.

    The property test (tests/unit/consumers/test_email_bytes.py) shows it for the Python the
    tests run on; the image takes the newest 3.11 release, whose package might one day write
    a header or a body otherwise. Then every message is built by the package (~5 ms here).
    """
    if not plain_sender(sender):
        return False
    for body in _PROBE_BODIES:
        payload = EmailPayload(to=f"{'p' * 62}@example.com", subject="Hi " * 23, body=body)
        event = Event(
            event_id=str(uuid.UUID(int=1, version=4)),
            event_type="Email",
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
            producer="qchem-events",
            schema_version=1,
            key=payload.to,
            payload=payload,
        )
        if _direct_bytes(sender, event) != _package_data(sender, event)[0]:
            return False
    return True


def _email_message(sender: str, event: Event) -> EmailMessage:
    """The message for `event` (identical every time it is built, see module docstring) by
    the email package; its payload has passed `refuse_unsafe`."""
    payload: EmailPayload = event.payload
    message = EmailMessage()
    try:
        message["From"] = sender
        message["To"] = payload.to
        message["Subject"] = payload.subject
        message["Date"] = format_datetime(event.occurred_at)
        message["Message-ID"] = message_id(event.event_id)
        message["X-Event-ID"] = event.event_id
    except ValueError as exc:
        # e.g. a CR/LF in the subject (header injection): no retry will fix the payload.
        raise PermanentError(f"invalid email header: {exc}") from exc
    message.set_content(payload.body)
    return message


def _transact(
    client: Client, sender: str, to: str, data: bytes, international: bool
) -> dict[str, tuple[int, bytes]]:
    """MAIL, RCPT, DATA for `data` to the one recipient; smtplib's exceptions on failure."""
    options: tuple[str, ...] = ()
    if international:
        client.ehlo_or_helo_if_needed()  # a no-op on a reused connection: EHLO was done
        if not client.has_extn("smtputf8"):
            raise smtplib.SMTPNotSupportedError("the sender needs SMTPUTF8")
        options = ("SMTPUTF8", "BODY=8BITMIME")
    # The exact bytes checked by `check_generated`, to the one recipient: send_message would
    # generate the message again and take recipients from To/Cc/Bcc headers.
    return client.sendmail(sender, [to], data, options)


def dropped_before_data(client: Client, exc: BaseException) -> bool:
    """Whether `exc` says the connection was gone before any of the message went out.

    Only before DATA, and only for failures of the connection itself: disconnected, reset,
    broken pipe, timed out, or 421 ("closing transmission channel", what a server says when
    it ends an idle session). A reply about the message (550 no such mailbox, 452 ...) is
    the message's own answer and is classified, not repeated."""
    if client.data_started:
        return False
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = {code for code, _ in exc.recipients.values()}
        return codes == {421}
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    # Every other smtplib exception is an OSError too, and says something else.
    return not isinstance(exc, smtplib.SMTPException) and isinstance(exc, OSError)


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
