"""Engine creation and schema migration.

The pool is bounded (`DB_POOL_SIZE`, no overflow) and waits at most `DB_POOL_TIMEOUT_S` for a
connection: an exhausted pool is a "database unavailable" condition the listener backs off
from (retry_topics/policy.py), not something to queue behind forever.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Engine

from common.settings import Settings
from common.urls import parse_url, scrub

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(settings: Settings, *, pool_size: int | None = None) -> Engine:
    return create_engine(
        parse_url(settings.sqlalchemy_url),
        pool_size=pool_size or settings.db_pool_size,
        max_overflow=0,
        pool_timeout=settings.db_pool_timeout_s,
        # A connection that died with the server is noticed at checkout, not mid-transaction.
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": 3,
            "application_name": "qchem-events",
            # lock_timeout makes a row held by someone else a fast transient failure
            # (scenario 1) instead of a stuck worker.
            "options": f"-c lock_timeout={settings.db_lock_timeout_ms}",
        },
    )


def database_answers(engine: Engine) -> bool:
    """One `SELECT 1`: does the database take a connection and a statement now?"""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:
        return False
    return True


def alembic_config(url: str | URL) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    rendered = (parse_url(url) if isinstance(url, str) else url).render_as_string(
        hide_password=False
    )
    # ConfigParser interpolation: a '%' in a password must be doubled.
    config.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return config


def describe_error(exc: BaseException, settings: Settings) -> str:
    """One printable line about a database error, without the password.

    A driver's message quotes what it was given (a host name, a DSN), which can hold part of
    a password: URL passwords and the configured password, raw and escaped, are masked."""
    url = parse_url(settings.sqlalchemy_url)
    password = url.password if isinstance(url.password, str) else ""
    secrets = [password, quote(password, safe=""), quote_plus(password)]
    return scrub(str(getattr(exc, "orig", None) or exc), secrets=secrets)


def migrate(url: str | URL) -> None:
    """Apply every pending migration; a no-op when the schema is current (idempotent).

    An advisory lock serialises concurrent start-ups (several consumer processes at once).
    """
    url = parse_url(url) if isinstance(url, str) else url
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(7461532)"))
            try:
                config = alembic_config(url)
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(7461532)"))
                conn.commit()
    finally:
        engine.dispose()
