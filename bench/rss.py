"""A process's memory as the kernel counts it (/proc/<pid>/status), sampled on a thread."""

from __future__ import annotations

import subprocess
import threading
import time

SAMPLE_S = 0.2


def proc_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


class Sampler:
    """VmRSS of a process every SAMPLE_S seconds, on a thread, until it exits."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.t0 = time.monotonic()
        self.samples: list[tuple[float, int]] = []  # (seconds since spawn, kB)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while self.proc.poll() is None:
            rss = proc_kb(self.proc.pid, "VmRSS")
            if rss is not None:
                self.samples.append((time.monotonic() - self.t0, rss))
            time.sleep(SAMPLE_S)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def between(self, start: float, end: float) -> list[int]:
        return [kb for t, kb in self.samples if start <= t <= end]

    def join(self) -> None:
        self._thread.join(timeout=10)

    def series(self, points: int = 60) -> list[tuple[float, float]]:
        """At most `points` (t s, MB) pairs for plotting, every k-th sample."""
        step = max(1, len(self.samples) // points)
        return [(round(t, 1), round(kb / 1024, 1)) for t, kb in self.samples[::step]]


def mb(kb: float | None) -> float | None:
    return None if kb is None else round(kb / 1024, 1)
