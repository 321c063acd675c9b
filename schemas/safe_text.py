"""What text from a record may go into a mail header, a report line or a terminal.

One definition of a "control character" serves three places: the event validator refuses
them where a field becomes a header or a report line (schemas/validation.py), the e-mail
handler checks again right before sending (consumers/handlers/email.py), and whatever shows
record bytes to a person escapes them (the report renderer, `dlq list`/`dlq show`).

Each `*_problem` function returns what is wrong, in words that never quote the value (it may
be personal data), or None when the text is acceptable.
"""

from __future__ import annotations

import re
from typing import Final

# C0 (CR, LF, ESC, BEL ...), DEL and C1 (NEL, CSI ...), plus the Unicode line and paragraph
# separators that some readers treat as line ends. A terminal acts on ESC/CSI sequences (clear
# the screen, set the window title, hide text); a mail header or report line ends at CR/LF.
CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Bidirectional embeddings, overrides and isolates ("Trojan Source", CVE-2021-42574): they
# reorder what a terminal or a report viewer shows, so shown text is not what was sent. Escaped
# wherever text is shown to a person; not refused in events (right-to-left names are text).
_BIDI: Final = "\u202a-\u202e\u2066-\u2069"
_SHOWN_ESCAPED: Final = re.compile(f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
_SHOWN_ESCAPED_BUT_LAYOUT: Final = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]")
# An RFC 2047 encoded word, broadly: anything a lenient decoder might decode. A strict
# pattern would let through the near-misses some mail readers still decode.
ENCODED_WORD: Final = re.compile(r"=\?.*\?=", re.DOTALL)
# One plain RFC 5322 addr-spec, ASCII only: dot-atom local part, host-name domain. No display
# name, no comments, no quoted local part, no list, no group, no domain literal - every one
# of those has a parser somewhere that reads it as another address.
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDR_SPEC: Final = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@{_LABEL}(?:\.{_LABEL})*")
MAX_ADDRESS_CHARS: Final = 254  # RFC 5321 path limit minus the angle brackets
MAX_LOCAL_CHARS: Final = 64


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, keep_layout: bool = False) -> str:
    """`text` with every control character written as `\\xNN` / `\\uNNNN`.

    The same spelling as the logs' `backslashreplace` for undecodable bytes, so one escaped
    record reads the same everywhere. `keep_layout` leaves newlines and tabs alone, for
    multi-line blocks (a payload, a stack trace) shown as such; CR is still escaped, as it
    lets a line overwrite what came before it on a terminal. Bidirectional controls are
    escaped too.
    """
    pattern = _SHOWN_ESCAPED_BUT_LAYOUT if keep_layout else _SHOWN_ESCAPED
    return pattern.sub(_escape_one, text) if pattern.search(text) else text


def control_problem(text: str) -> str | None:
    """Why `text` cannot be one line of a header or a report, or None."""
    found = CONTROL.search(text)
    if found is None:
        return None
    return f"contains a control character (U+{ord(found.group()):04X}) at index {found.start()}"


def subject_problem(subject: str) -> str | None:
    """Why `subject` cannot be a mail Subject, or None.

    An encoded word is refused outright: Python's e-mail generator (before the fix for
    CVE-2024-6923) could decode one into raw CR/LF while folding, and no producer of ours
    needs to pre-encode a subject - the generator encodes non-ASCII text itself.
    """
    problem = control_problem(subject)
    if problem is not None:
        return problem
    if ENCODED_WORD.search(subject) is not None:
        return "contains an RFC 2047 encoded word (=?...?=)"
    return None


def address_problem(to: str) -> str | None:
    """Why `to` is not exactly one plain addr-spec such as `ops@example.com`, or None."""
    if len(to) > MAX_ADDRESS_CHARS:
        return f"longer than {MAX_ADDRESS_CHARS} characters"
    if ADDR_SPEC.fullmatch(to) is None:
        return (
            "must be exactly one plain address such as ops@example.com (ASCII, no display "
            "name, list, group, comment or quotes)"
        )
    if len(to.rpartition("@")[0]) > MAX_LOCAL_CHARS:
        return f"local part longer than {MAX_LOCAL_CHARS} characters"
    return None
