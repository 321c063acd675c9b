"""CPU accounting for the benchmarks: microseconds of CPU per event, by process.

    with CpuMeter(app_pid=child.pid, bootstrap="127.0.0.1:9092") as meter:
        ... process n events ...
    meter.per_event(n)   # {"app": 41.2, "postgresql": 12.9, "broker": 6.1}

Read from /proc (Linux): user + system time of the app process (all its threads), of every
process of the PostgreSQL server (the postmaster's children: one backend per connection, the
WAL writer, the checkpointer...) and of the broker found listening on the bootstrap port.
A process that starts during the measurement counts from zero; one that exits during it is
lost (the app's pooled backends live through a run, so that is rare and small).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all threads); 0 when it is gone."""
    try:
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    # After the command name: state is field 3, utime 14 and stime 15 (man 5 proc).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def _pids() -> list[int]:
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


# A backend's title (`postgres: 15/main: qchem qchem_perf 127.0.0.1(5012) idle`) and an
# autovacuum worker's (`postgres: 15/main: autovacuum worker qchem_perf`) name their database.
_BACKEND = re.compile(  # the cluster name part is absent where cluster_name is unset
    r"postgres: (?:[^:]+: )?(?:autovacuum worker (\S+)|\S+ (\S+) (?:\[local\]|\S+\(\d+\)))"
)


def database_of(title: str) -> str | None:
    """The database a PostgreSQL process works for, from its title; None for the server-wide
    processes (WAL writer, checkpointer, ...)."""
    match = _BACKEND.match(title)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def postgres_pids(database: str | None = None) -> list[int]:
    """Every PostgreSQL server process; with `database`, without the backends and vacuum
    workers of the other databases (a shared server: other sessions' tests do not count),
    but with the server-wide ones (WAL writer, checkpointer...) that everybody's work loads."""
    found = []
    for pid in _pids():
        try:
            comm = (PROC / str(pid) / "comm").read_text().strip()
            title = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, UnicodeDecodeError):
            continue
        if not comm.startswith("postgres"):
            continue
        works_for = database_of(title)
        if database is None or works_for is None or works_for == database:
            found.append(pid)
    return found


def listening_pid(port: int) -> int | None:
    """The process holding a listening TCP socket on `port` (IPv4 or IPv6), if visible."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(cols[9])
    for pid in _pids():
        try:
            for fd in (PROC / str(pid) / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
        except OSError:
            continue
    return None


def _total(pids: list[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


@dataclass
class CpuMeter:
    """CPU used between enter and exit by the app, the PostgreSQL server and the broker."""

    app_pid: int
    bootstrap: str
    database: str | None = None  # count only this database's backends (postgres_pids)
    used_s: dict[str, float] = field(default_factory=dict)
    _start: dict[str, dict[int, float]] = field(default_factory=dict)

    def _processes(self) -> dict[str, list[int]]:
        port = int(self.bootstrap.split(",")[0].rsplit(":", 1)[1])
        broker = listening_pid(port)
        return {
            "app": [self.app_pid],
            "postgresql": postgres_pids(self.database),
            "broker": [] if broker is None else [broker],
        }

    def __enter__(self) -> CpuMeter:
        self._start = {name: _total(pids) for name, pids in self._processes().items()}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for name, pids in self._processes().items():
            before = self._start.get(name, {})
            end = _total(pids)
            self.used_s[name] = sum(end[pid] - before.get(pid, 0.0) for pid in end)

    def per_event(self, events: int) -> dict[str, float]:
        """Microseconds of CPU per event, by process, rounded to 0.1 us."""
        return {name: round(s * 1e6 / events, 1) for name, s in self.used_s.items()}
