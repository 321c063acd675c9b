"""`storage.bulk.array_literal` round-trips through real PostgreSQL: what the writer and the
set-based handlers send as one text literal per column comes back value for value."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage.bulk import array_literal

TEXTS = [
    "plain",
    "",
    "NULL",
    'quote " inside',
    'back\\slash \\" both',
    "{braces},commas, spaces ",
    "unicode é 中 \U0001f9ea \u202e",
    "new\nline\ttab",
    None,
]


def _round_trip(engine: Engine, values: list[Any], pg_type: str) -> list[Any]:
    with engine.connect() as conn:
        query = text(f"SELECT CAST(:a AS {pg_type}[])")
        return list(conn.execute(query, {"a": array_literal(values)}).scalar_one())


def test_text_values_come_back_unchanged(db_engine: Engine) -> None:
    assert _round_trip(db_engine, TEXTS, "text") == TEXTS


@pytest.mark.parametrize(
    ("values", "pg_type"),
    [
        ([0, -1, 2**31 - 1, None], "int"),
        ([2**62, 0, None], "bigint"),
        (
            [
                datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
                datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
                None,
            ],
            "timestamptz",
        ),
    ],
)
def test_numbers_and_times_come_back_unchanged(
    db_engine: Engine, values: list[Any], pg_type: str
) -> None:
    assert _round_trip(db_engine, values, pg_type) == values


def test_an_empty_column_is_an_empty_array(db_engine: Engine) -> None:
    assert _round_trip(db_engine, [], "text") == []


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",))),
        ),
        max_size=8,
    )
)
def test_any_texts_come_back_unchanged(db_engine: Engine, values: list[str | None]) -> None:
    assert _round_trip(db_engine, values, "text") == values
