"""Text PostgreSQL will store: what hostile record bytes put in a key or an error message
(NUL, lone surrogates from a lossy decode) would make the whole statement fail - and, in a
group-committed batch, the writes of every event beside it."""

from __future__ import annotations


def pg_text(value: str) -> str:
    """`value` with NUL and lone surrogates shown escaped (`\\x00`, `\\ud800`), as the logs do."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
