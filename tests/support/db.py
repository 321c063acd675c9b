"""Reading the test database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    """The rows `sql` selects (with `params` bound)."""
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).all())


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    """The one value `sql` selects (with `params` bound)."""
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def wait_for_scalar(
    engine: Engine, sql: str, expected: Any, *, timeout: float, message: str
) -> None:
    """Until `sql` selects `expected` (AssertionError naming `message` after `timeout`)."""
    from tests.support.kafka import wait_for

    wait_for(lambda: scalar(engine, sql) == expected, timeout=timeout, message=message)
