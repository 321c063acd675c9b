"""An ordinary email's bytes written directly, byte for byte what the email package writes.

The Email handler's message is an `EmailMessage` (each header parsed into a header object,
`set_content(body)`, then `as_bytes(policy=policy.SMTP)`, which refolds every header from its
parse tree): about a millisecond of CPU per email, most of the handler's own. For the usual
email that output is fixed text around the fields, so `message_bytes` writes it - but only
when every field has a form for which the package's output is known exactly (below), and
returns None otherwise: the handler then builds the message with the package as before.
tests/unit/consumers/test_email_bytes.py compares the two, byte for byte, over generated
fields (long lines, non-ASCII, CR/LF, spaces, empty values, odd times).

Headers (policy.SMTP: CRLF line ends, lines folded beyond 78 characters), one line each, in
the order the handler sets them:

* From, To: the address as given - a plain ASCII addr-spec (`address_problem`; no display
  name, nothing quoted), so the address parser and the folder give it back unchanged - when
  the line fits in 78 characters;
* Subject: as given, when it is ASCII without control characters or encoded words
  (`subject_problem`: what is left is printable text the folder copies as is), not empty
  (the package writes "Subject:" without the space then) and the line fits;
* Date: `format_datetime` of the event time. The package parses that text back and formats
  the result again; a UTC time from the year 1000 on comes back unchanged (a two-digit year
  would be read as 19xx/20xx);
* Message-ID and X-Event-ID: the event id, when it is a canonical UUID;
* Content-Type, Content-Transfer-Encoding, MIME-Version: as `set_content` sets them.

The body is `set_content(body)`'s choice (email.contentmanager._encode_text, under the
message's policy.default): the UTF-8 text split into lines at CR, LF and CRLF; if no line is
longer than 78 bytes, 7bit when ASCII and 8bit otherwise, the lines as they are; else
quoted-printable or base64, whichever is shorter over the first 10 lines (quoted-printable on
a tie), by the package's own encoders. The generator ends every line with CRLF.
"""

from __future__ import annotations

import binascii
import re
from datetime import datetime, timedelta
from email import quoprimime
from email.utils import format_datetime
from typing import Final

from schemas.safe_text import address_problem

MAX_LINE: Final = 78  # max_line_length of policy.SMTP (headers) and policy.default (body)
_BASE64_CHUNK: Final = MAX_LINE // 4 * 3  # input bytes per base64 line, as the package cuts
_SNIFF_LINES: Final = 10  # set_content picks quoted-printable or base64 on this many lines
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UTC: Final = timedelta(0)


def message_id(event_id: str) -> str:
    """The Message-ID of the event's email (the same every time it is sent)."""
    return f"<{event_id}@qchem-events>"


def plain_sender(sender: str) -> bool:
    """Whether `message_bytes` can write the From line for `sender`."""
    return address_problem(sender) is None and len("From: ") + len(sender) <= MAX_LINE


def message_bytes(
    sender: str, to: str, subject: str, body: str, event_id: str, occurred_at: datetime
) -> bytes | None:
    """The message as the email package would write it, or None outside the forms above.

    The caller has already refused `to` and `subject` unless `address_problem` and
    `subject_problem` accept them, and checked `sender` with `plain_sender`.
    """
    if (
        len("To: ") + len(to) > MAX_LINE
        or not subject
        or len("Subject: ") + len(subject) > MAX_LINE
        or not subject.isascii()
        or _UUID.fullmatch(event_id) is None
        or occurred_at.utcoffset() != _UTC
        or occurred_at.year < 1000
    ):
        return None
    encoded = body_bytes(body)
    if encoded is None:
        return None
    cte, content = encoded
    head = (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: {format_datetime(occurred_at)}\r\nMessage-ID: {message_id(event_id)}\r\n"
        f'X-Event-ID: {event_id}\r\nContent-Type: text/plain; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {cte}\r\nMIME-Version: 1.0\r\n\r\n"
    )
    return head.encode("ascii") + content


def body_bytes(body: str) -> tuple[str, bytes] | None:
    """The Content-Transfer-Encoding `set_content(body)` picks, and the body as sent.

    None for text UTF-8 cannot encode (a lone surrogate): the package raises its own error.
    """
    try:
        lines = body.encode("utf-8").splitlines()
    except UnicodeEncodeError:
        return None
    if max(map(len, lines), default=0) <= MAX_LINE:
        data = b"\r\n".join(lines) + b"\r\n"
        return ("7bit" if data.isascii() else "8bit"), data
    sniff = b"\n".join(lines[:_SNIFF_LINES]) + b"\n"
    sniff_qp = quoprimime.body_encode(sniff.decode("latin-1"), MAX_LINE)
    if len(sniff_qp) > len(binascii.b2a_base64(sniff)):
        whole = b"\n".join(lines) + b"\n"
        chunks = range(0, len(whole), _BASE64_CHUNK)
        encoded = b"".join(binascii.b2a_base64(whole[i : i + _BASE64_CHUNK]) for i in chunks)
        return "base64", encoded.replace(b"\n", b"\r\n")
    if len(lines) > _SNIFF_LINES:
        whole_text = (b"\n".join(lines) + b"\n").decode("latin-1")
        sniff_qp = quoprimime.body_encode(whole_text, MAX_LINE)
    # Only printable ASCII, tab and the "\n" that ends each line are left after encoding.
    return "quoted-printable", sniff_qp.replace("\n", "\r\n").encode("ascii")
