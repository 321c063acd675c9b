"""URLs with credentials are parsed one way (common/urls.py): issue 17, defect 3.

An unescaped '@' in a password split differently by different parsers put the tail of the
password into a host name that the driver printed. Now such a URL is rejected without showing
any of it, and every masker hides everything up to the last '@'.
"""

from __future__ import annotations

import pytest

from common.settings import ConfigError, load_settings, redact_url
from common.urls import UrlError, mask_url_passwords, parse_url, scrub
from ops.logging import mask_secrets

AMBIGUOUS = "postgresql://qchem:Wr0ng@Leak77@127.0.0.1:5432/qchem"


@pytest.mark.parametrize(
    "url",
    [
        AMBIGUOUS,
        "postgresql://us@er:Leak77@127.0.0.1/qchem",  # '@' in the user name
        "postgresql://u:p@Leak77/x@127.0.0.1/qchem",  # the tail would become host and database
        "postgresql://u:p@Leak77:9@127.0.0.1/qchem",  # ... or a port
    ],
)
def test_a_second_at_sign_is_ambiguous_and_the_message_shows_none_of_the_url(url: str) -> None:
    with pytest.raises(UrlError) as error:
        parse_url(url)
    assert "ambiguous" in str(error.value)
    assert "Leak77" not in str(error.value) and "127.0.0.1" not in str(error.value)


def test_a_malformed_url_error_does_not_echo_the_parsers_text() -> None:
    # make_url's own error here is "invalid literal for int() with base 10: 'w@host'".
    with pytest.raises(UrlError) as error:
        parse_url("postgresql://u:Leak77:w/db")
    assert "Leak77" not in str(error.value)


def test_an_escaped_at_sign_is_the_way_to_write_one() -> None:
    url = parse_url("postgresql://qchem:Wr0ng%40Leak77@127.0.0.1:5432/qchem")
    assert (url.password, url.host, url.port) == ("Wr0ng@Leak77", "127.0.0.1", 5432)


def test_the_settings_reject_an_ambiguous_database_url_in_one_line() -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(_env_file=None, database_url=AMBIGUOUS)
    message = str(error.value)
    assert message.startswith("DATABASE_URL:") and "\n" not in message
    assert "Leak77" not in message and "Wr0ng" not in message
    assert "%40" in message  # says how to write it


def test_the_sqlalchemy_url_keeps_an_escaped_password_escaped() -> None:
    s = load_settings(_env_file=None, database_url="postgresql://u:a%40b%2Fc@h:5432/d")
    assert s.sqlalchemy_url == "postgresql+psycopg2://u:a%40b%2Fc@h:5432/d"
    assert parse_url(s.sqlalchemy_url).password == "a@b/c"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("connect postgresql://u:hunter2@db:5432/x failed", "postgresql://u:***@db:5432/x"),
        ("https://user:I@Leak77@host/", "https://user:***@host/"),
        ("see https://us@er:Leak77@host/x", "https://us@er:***@host/x"),
        ("postgresql://u:pa/Leak77@h/d", "postgresql://u:***@h/d"),
    ],
)
def test_the_log_masker_hides_everything_up_to_the_last_at(text: str, expected: str) -> None:
    url = next(token for token in text.split() if "://" in token)
    for masked in (mask_url_passwords(text), mask_secrets(text), redact_url(url)):
        assert expected in masked or masked == expected
        assert "Leak77" not in masked and "hunter2" not in masked


def test_redact_url_of_an_ambiguous_url_shows_no_part_of_the_password() -> None:
    assert redact_url(AMBIGUOUS) == "postgresql://qchem:***@127.0.0.1:5432/qchem"


def test_scrub_removes_a_known_secret_and_url_passwords_and_keeps_one_line() -> None:
    text = 'FATAL: bad "Wr0ng@Leak77"\nDETAIL: postgresql://q:Wr0ng@h/d'
    cleaned = scrub(text, secrets=["Wr0ng@Leak77", "Wr0ng"])
    assert "Leak77" not in cleaned and "Wr0ng" not in cleaned
    assert "\n" not in cleaned and cleaned.startswith("FATAL: bad")
