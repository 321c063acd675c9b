"""Effect claims: one copy of an event performs its outside effect, however many overlap.

The dedup row says an effect was *applied*; it is written with the effect's database part,
after the outside part (an email sent, an API called). Two copies of one event in flight at
once (a producer's retry, a replay overlapping the original, the same event on two
partitions or two instances) would both find no dedup row and both send. So before its
outside effect a copy *claims* the event id in PostgreSQL, in one statement:

* a dedup row exists (same origin or same event id) -> DONE: a duplicate, nothing performed;
* no claim, an expired one, or one held by this same origin record -> CLAIMED: perform;
* a live claim of another copy -> BUSY: hold this copy in place and ask again; it ends DONE
  when the other copy's effect commits, or CLAIMED if that copy failed and released it.

A copy whose effect fails releases its claim (its retry claims again). A copy that dies after
claiming leaves a claim that its own redelivery (same origin) takes over at once, and that
other copies wait out until `LEASE_S`. The same origin may take its claim over because only a
redelivery of that record carries it: its retries and replays follow its failure, which
released the claim.

What this cannot close: a crash *between* the send and the commit. The redelivered record
sends again; the message is byte-identical with `Message-ID: <event-id@qchem-events>`, so a
receiving system can drop the repeat (README, "What exactly-once means here").
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

# Longer than any perform plus a database outage its write may be held through: a claim that
# expires while its copy's write is still held would let another copy perform again.
LEASE_S = 600


class EffectBusy(Exception):
    """Another copy of this event is performing its effect right now (hold, ask again)."""


class Claim(StrEnum):
    CLAIMED = "claimed"  # perform the effect
    DONE = "done"  # applied before: a duplicate
    BUSY = "busy"  # another copy is performing it now: ask again later


_CLAIM = text(
    """
WITH done AS (
    SELECT 1 FROM dedup_keys
    WHERE consumer_group = :group
      AND (event_id = :event_id
           OR (origin_topic = :topic AND origin_partition = :partition
               AND origin_offset = :offset))
    LIMIT 1
), taken AS (
    INSERT INTO effect_claims AS c
        (consumer_group, event_id, origin_topic, origin_partition, origin_offset,
         claimed_until)
    SELECT :group, :event_id, :topic, :partition, :offset,
           now() + make_interval(secs => :lease)
    WHERE NOT EXISTS (SELECT 1 FROM done)
    ON CONFLICT (consumer_group, event_id) DO UPDATE
        SET origin_topic = EXCLUDED.origin_topic,
            origin_partition = EXCLUDED.origin_partition,
            origin_offset = EXCLUDED.origin_offset,
            claimed_until = EXCLUDED.claimed_until
        WHERE c.claimed_until < now()
           OR (c.origin_topic = EXCLUDED.origin_topic
               AND c.origin_partition = EXCLUDED.origin_partition
               AND c.origin_offset = EXCLUDED.origin_offset)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM done), EXISTS (SELECT 1 FROM taken)
"""
)

_RELEASE = text(
    """
DELETE FROM effect_claims
WHERE consumer_group = :group AND event_id = :event_id
  AND origin_topic = :topic AND origin_partition = :partition AND origin_offset = :offset
"""
)

_PRUNE = text(
    """
DELETE FROM effect_claims WHERE ctid IN (
    SELECT ctid FROM effect_claims WHERE claimed_until < now() LIMIT :batch
)
"""
)


def claim(
    engine: Engine, group: str, topic: str, partition: int, offset: int, event_id: str
) -> Claim:
    """Claim `event_id`'s outside effect for the record at (topic, partition, offset)."""
    params = _params(group, topic, partition, offset, event_id)
    with engine.begin() as conn:
        done, taken = conn.execute(_CLAIM, {**params, "lease": LEASE_S}).one()
    if done:
        return Claim.DONE
    return Claim.CLAIMED if taken else Claim.BUSY


def release(
    engine: Engine, group: str, topic: str, partition: int, offset: int, event_id: str
) -> None:
    """Give the claim up (the effect failed): another copy, or this one's retry, may take it."""
    with engine.begin() as conn:
        conn.execute(_RELEASE, _params(group, topic, partition, offset, event_id))


def prune_expired(conn: Connection, batch: int) -> int:
    """Delete up to `batch` expired claims (an expired claim is the same as none)."""
    return conn.execute(_PRUNE, {"batch": batch}).rowcount or 0


def _params(
    group: str, topic: str, partition: int, offset: int, event_id: str
) -> dict[str, object]:
    return {
        "group": group,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "event_id": event_id,
    }
