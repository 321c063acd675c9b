"""URLs with credentials, parsed one way everywhere: SQLAlchemy's `make_url`.

psycopg2 never sees the DATABASE_URL string: SQLAlchemy's `make_url` splits it and hands the
driver host, user and password, so `make_url` decides where a password ends. The settings,
the engine and migrations (storage/db.py), error messages and the log masker all follow it.

An unescaped '@' in a password is where parsers disagree (urllib splits at the last '@',
`make_url` at the first): the tail of the password became a "host name" that the driver then
printed in its error (issue 17, defect 3). So a URL with more than one '@' is rejected, and
the maskers, which cannot reject what they are shown, hide everything up to the last '@' - a
superset of the password whichever way it is read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

REDACTED = "***"
EXPECTED = "expected scheme://user:password@host:port/database"

# `scheme://user:` then the password, greedily up to the last '@' of the token. Bounded
# repeats keep the pattern linear on hostile text (an unbounded scheme once backtracked
# quadratically over a long run of letters).
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^:/\s]{0,256}:)\S{0,1024}@")


class UrlError(ValueError):
    """A URL that cannot be used; the message never contains any part of the URL."""


def parse_url(raw: str) -> URL:
    """The URL as SQLAlchemy reads it; `UrlError` when it is ambiguous or malformed."""
    if raw.count("@") > 1:
        raise UrlError(
            "ambiguous URL: more than one '@' (write an '@' in the user name or password as %40)"
        )
    try:
        url = make_url(raw)
        port = url.port  # make_url accepts any integer
    except (ValueError, ArgumentError):
        # Their messages quote the text they choked on, which can be part of a password.
        raise UrlError(f"malformed URL ({EXPECTED})") from None
    if port is not None and not 0 < port < 65536:
        raise UrlError("malformed URL (port out of range)")
    return url


def redact_url(raw: str | URL) -> str:
    """The URL with its password replaced, safe for logs and error messages."""
    if isinstance(raw, URL):
        return raw.render_as_string(hide_password=True)
    try:
        return parse_url(raw).render_as_string(hide_password=True)
    except UrlError:
        return mask_url_passwords(raw)


def mask_url_passwords(text: str) -> str:
    """Every `scheme://user:password@` in free text, masked up to the token's last '@'."""
    if "://" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}{REDACTED}@", text)


def scrub(text: str, secrets: Iterable[str | None] = (), limit: int = 300) -> str:
    """A driver's error text made printable: its first line, URL passwords and the given
    secrets (the configured password, raw and decoded) masked, cut at `limit` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = mask_url_passwords(lines[0] if lines else "")
    for secret in sorted(filter(None, secrets), key=len, reverse=True):
        line = line.replace(secret, REDACTED)
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    return line[:limit]
