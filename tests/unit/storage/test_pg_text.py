"""Text from hostile record bytes is made storable, not refused (storage/pg_text.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.pg_text import pg_text


def test_nul_and_lone_surrogates_are_escaped() -> None:
    assert pg_text("a\x00b") == "a\\x00b"
    assert pg_text("key \ud800!") == "key \\ud800!"
    assert pg_text("plain é") == "plain é"


@given(st.text())
def test_anything_becomes_utf8_without_nul(value: str) -> None:
    cleaned = pg_text(value)
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")  # raises on a lone surrogate
