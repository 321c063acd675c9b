"""storage.bulk.array_literal: the text form of a PostgreSQL array (round trips through a
real server are in tests/integration/storage/test_bulk.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from storage.bulk import array_literal


def test_plain_texts_are_quoted_and_joined() -> None:
    assert array_literal(["a", "b c", ""]) == '{"a","b c",""}'


def test_none_is_an_unquoted_null_and_the_text_null_stays_quoted() -> None:
    assert array_literal([None, "NULL", 1]) == '{NULL,"NULL","1"}'


def test_quotes_and_backslashes_are_escaped_wherever_they_are() -> None:
    assert array_literal(['say "hi"', "a\\b", "plain"]) == '{"say \\"hi\\"","a\\\\b","plain"}'
    assert array_literal(['","']) == '{"\\",\\""}'  # a separator look-alike inside one text
    assert array_literal(['"', None]) == '{"\\"",NULL}'


def test_numbers_and_datetimes_use_str() -> None:
    moment = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert array_literal([3, moment]) == '{"3","2024-05-01 12:00:00.123000+00:00"}'


def test_an_empty_column_is_an_empty_array() -> None:
    assert array_literal([]) == "{}"
    assert array_literal(iter(())) == "{}"
