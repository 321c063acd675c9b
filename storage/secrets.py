"""Secrets the application makes for itself and keeps in the database (table app_secrets).

The replay signing key (retry_topics/signing.py) must be the same for every instance and for
the CLI that replays: the database is what they all share, and whoever can read it is trusted
already. The first caller creates the key; everyone after reads it.
"""

from __future__ import annotations

import secrets

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine

from storage.models import app_secrets

REPLAY_SIGNING_KEY = "replay-signing-key"


def replay_signing_key(engine: Engine) -> bytes:
    with engine.begin() as conn:
        conn.execute(
            insert(app_secrets)
            .values(name=REPLAY_SIGNING_KEY, value=secrets.token_bytes(32))
            .on_conflict_do_nothing(index_elements=["name"])
        )
        return bytes(
            conn.execute(
                select(app_secrets.c.value).where(app_secrets.c.name == REPLAY_SIGNING_KEY)
            ).scalar_one()
        )
