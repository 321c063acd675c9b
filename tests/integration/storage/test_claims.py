"""Effect claims against the real database (storage/claims.py)."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from storage import claims
from storage.claims import Claim

pytestmark = pytest.mark.integration

GROUP, TOPIC, EVENT = "g", "qchem.email", "5f0c6a9e-3b7e-4c51-9b43-2f1d0c9d8a11"


def test_one_copy_claims_the_other_waits_then_finds_it_done(db_engine: Engine) -> None:
    assert claims.claim(db_engine, GROUP, TOPIC, 0, 10, EVENT) is Claim.CLAIMED
    assert claims.claim(db_engine, GROUP, TOPIC, 1, 20, EVENT) is Claim.BUSY
    # The same record redelivered (its process died after claiming) takes its claim over.
    assert claims.claim(db_engine, GROUP, TOPIC, 0, 10, EVENT) is Claim.CLAIMED
    with db_engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dedup_keys (consumer_group, origin_topic, origin_partition,"
                " origin_offset, event_id) VALUES (:g, :t, 0, 10, :e)"
            ),
            {"g": GROUP, "t": TOPIC, "e": EVENT},
        )
    assert claims.claim(db_engine, GROUP, TOPIC, 1, 20, EVENT) is Claim.DONE
    assert claims.claim(db_engine, "other-group", TOPIC, 1, 20, EVENT) is Claim.CLAIMED


def test_a_released_or_expired_claim_goes_to_the_next_copy(db_engine: Engine) -> None:
    assert claims.claim(db_engine, GROUP, TOPIC, 0, 10, EVENT) is Claim.CLAIMED
    claims.release(db_engine, GROUP, TOPIC, 1, 20, EVENT)  # not its claim: nothing happens
    assert claims.claim(db_engine, GROUP, TOPIC, 1, 20, EVENT) is Claim.BUSY
    claims.release(db_engine, GROUP, TOPIC, 0, 10, EVENT)
    assert claims.claim(db_engine, GROUP, TOPIC, 1, 20, EVENT) is Claim.CLAIMED
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE effect_claims SET claimed_until = now() - interval '1 s'"))
    assert claims.claim(db_engine, GROUP, TOPIC, 2, 30, EVENT) is Claim.CLAIMED
    with db_engine.begin() as conn:
        conn.execute(text("UPDATE effect_claims SET claimed_until = now() - interval '1 s'"))
        assert claims.prune_expired(conn, batch=100) == 1
