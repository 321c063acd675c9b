"""consumers.handlers.email.check_generated: the last look at a message's bytes before SMTP.

The injected inputs are the bytes Python 3.11.7's generator really produced for the encoded
word subjects of issue 17 #2 (header lines, then a forged body).
"""

from __future__ import annotations

import pytest

from common.errors import PermanentError
from consumers.handlers.email import check_generated

GOOD = (
    b"From: q@x.test\r\nTo: ops@example.com\r\nSubject: Hi\r\n"
    b"Date: Sun, 29 Nov 2026 03:00:00 +0000\r\nMessage-ID: <e@qchem-events>\r\n"
    b'X-Event-ID: e\r\nContent-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\nMIME-Version: 1.0\r\n\r\nbody\r\n"
)


def test_the_expected_header_lines_pass() -> None:
    check_generated(GOOD, "ops@example.com")
    folded = GOOD.replace(b"Subject: Hi", b"Subject: Hi\r\n there")
    check_generated(folded, "ops@example.com")


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (GOOD.replace(b"Subject: Hi", b"Subject: Invoice\r\nBcc: evil@evil.test"), "unexpected"),
        (GOOD.replace(b"Subject: Hi", b"Subject: Invoice\r\n\r\nattacker text"), "unexpected"),
        (GOOD.replace(b"Subject: Hi", b"Subject: Hi\nBcc: evil@evil.test"), "malformed"),
        (GOOD.replace(b"Subject: Hi", b"Subject: Hi\rBcc: evil@evil.test"), "malformed"),
        (GOOD.replace(b"X-Event-ID: e", b"To: evil@evil.test"), "unexpected"),
        (GOOD.replace(b"To: ops@example.com", b"To: ops@example.com,\r\n evil@evil.test"), "To"),
        (GOOD.replace(b"\r\n\r\n", b"\r\n"), "malformed"),
    ],
)
def test_injected_or_unexpected_header_lines_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(PermanentError, match=why):
        check_generated(data, "ops@example.com")
