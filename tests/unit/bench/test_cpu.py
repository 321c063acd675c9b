"""bench/cpu.py: which PostgreSQL processes count for a benchmark's database."""

from __future__ import annotations

import pytest

from bench.cpu import database_of


@pytest.mark.parametrize(
    ("title", "database"),
    [
        ("postgres: 15/main: qchem qchem_perf 127.0.0.1(47202) idle", "qchem_perf"),
        ("postgres: 15/main: qchem qchem_h3 127.0.0.1(5012) INSERT", "qchem_h3"),
        ("postgres: 15/main: autovacuum worker qchem_perf", "qchem_perf"),
        # A server without cluster_name (Docker images): no "15/main: " part.
        ("postgres: qchem qchem_perf 172.17.0.1(5012) idle", "qchem_perf"),
        ("postgres: autovacuum worker qchem_perf", "qchem_perf"),
        ("postgres: walwriter", None),
        ("postgres: 15/main: walwriter   ", None),
        ("postgres: 15/main: checkpointer", None),
        ("postgres: 15/main: background writer", None),
        ("postgres: 15/main: logical replication launcher", None),
        ("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main", None),
    ],
)
def test_a_process_is_counted_for_the_database_its_title_names(
    title: str, database: str | None
) -> None:
    assert database_of(title) == database
