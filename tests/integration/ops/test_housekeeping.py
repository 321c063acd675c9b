"""Housekeeping prunes `event_records` and `dedup_keys` past their retention, in small batches
of their own transactions, against the real PostgreSQL (issue 11, defect 6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.housekeeping import prune_dedup_rows, prune_event_records, prune_old_rows

pytestmark = pytest.mark.integration

GROUP = "qchem-events.email"


def add_records(engine: Engine, first: int, count: int, seen_days: int, updated_days: int) -> None:
    """`count` event records at offsets first.., first seen and last updated so many days ago."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO event_records (consumer_group, origin_topic, origin_partition, "
                "origin_offset, event_type, status, first_seen_at, updated_at) "
                "SELECT :group, 'qchem.email', 0, n, 'Email', 'succeeded', "
                "now() - make_interval(days => :seen), now() - make_interval(days => :updated) "
                "FROM generate_series(:first, :last) AS n"
            ),
            {
                "group": GROUP,
                "seen": seen_days,
                "updated": updated_days,
                "first": first,
                "last": first + count - 1,
            },
        )


def add_dedup_rows(engine: Engine, first: int, count: int, days: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO dedup_keys (consumer_group, origin_topic, origin_partition, "
                "origin_offset, event_id, processed_at) "
                "SELECT :group, 'qchem.email', 0, n, 'id-' || n, "
                "now() - make_interval(days => :days) FROM generate_series(:first, :last) AS n"
            ),
            {"group": GROUP, "days": days, "first": first, "last": first + count - 1},
        )


@contextmanager
def deletes_and_commits(engine: Engine) -> Iterator[tuple[list[int], list[int]]]:
    """Rows deleted by each DELETE statement, and commits, while the block runs."""
    deleted: list[int] = []
    commits: list[int] = []

    def after(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deleted.append(cursor.rowcount)

    def commit(conn: Any) -> None:
        commits.append(1)

    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "commit", commit)
    try:
        yield deleted, commits
    finally:
        event.remove(engine, "after_cursor_execute", after)
        event.remove(engine, "commit", commit)


def offsets(engine: Engine, table: str) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(text(f"SELECT origin_offset FROM {table}")).scalars())


def test_old_event_records_are_pruned_in_batches_and_young_ones_kept(db_engine: Engine) -> None:
    add_records(db_engine, 0, 250, seen_days=40, updated_days=40)  # past a 35-day retention
    add_records(db_engine, 1000, 20, seen_days=3, updated_days=3)
    # Seen long ago but updated lately (a DLQ record replayed on day 34): still wanted.
    add_records(db_engine, 2000, 5, seen_days=40, updated_days=1)

    with deletes_and_commits(db_engine) as (deleted, commits):
        assert prune_event_records(db_engine, 35, batch=100) == 250

    assert deleted == [100, 100, 50]  # small batches ...
    assert len(commits) == 3  # ... each its own short transaction
    assert offsets(db_engine, "event_records") == set(range(1000, 1020)) | set(range(2000, 2005))
    assert prune_event_records(db_engine, 35, batch=100) == 0


def test_old_dedup_rows_are_pruned_in_batches_and_young_ones_kept(db_engine: Engine) -> None:
    add_dedup_rows(db_engine, 0, 120, days=36)
    add_dedup_rows(db_engine, 500, 30, days=34)

    with deletes_and_commits(db_engine) as (deleted, _):
        assert prune_dedup_rows(db_engine, 35, batch=50) == 120

    assert deleted == [50, 50, 20]
    assert offsets(db_engine, "dedup_keys") == set(range(500, 530))


def test_housekeeping_prunes_both_tables_by_their_settings(
    settings: Settings, db_engine: Engine
) -> None:
    s = settings.model_copy(update={"dedup_retention_days": 40, "event_record_retention_days": 10})
    add_records(db_engine, 0, 7, seen_days=20, updated_days=20)
    add_records(db_engine, 100, 3, seen_days=5, updated_days=5)
    add_dedup_rows(db_engine, 0, 4, days=45)
    add_dedup_rows(db_engine, 100, 6, days=20)

    pruned = prune_old_rows(db_engine, s)
    assert (pruned["event_records"], pruned["dedup_keys"]) == (7, 4)
    assert offsets(db_engine, "event_records") == {100, 101, 102}
    assert offsets(db_engine, "dedup_keys") == set(range(100, 106))


def test_pruning_event_records_uses_the_first_seen_index(db_engine: Engine) -> None:
    """A batch must not scan the whole table (migration 0004): the planner, told to avoid
    sequential scans where it can, still has an index to find old rows by."""
    add_records(db_engine, 0, 50, seen_days=40, updated_days=40)
    with db_engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN SELECT ctid FROM event_records WHERE first_seen_at < "
                    "now() - make_interval(days => 35) AND updated_at < "
                    "now() - make_interval(days => 35) LIMIT 10"
                )
            ).scalars()
        )
    assert "ix_event_records_first_seen_at" in plan, plan
