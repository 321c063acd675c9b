"""pyinstrument over every thread the app starts (one profiler per thread: pyinstrument
samples one), merged by role - listener, worker, writer - for `bench.throughput --profile`."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

from bench.common import warn


class ThreadProfiler:
    """Profiles every thread started while active, merged by role (listener, worker, writer)."""

    def __init__(self) -> None:
        self._original = threading.Thread.run
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._sessions: list[tuple[str, Any]] = []

    def start(self) -> None:
        from pyinstrument import Profiler

        original, lock, threads, sessions = (
            self._original,
            self._lock,
            self._threads,
            self._sessions,
        )

        def run(thread: threading.Thread) -> None:
            profiler = Profiler(interval=0.002, async_mode="disabled")
            with lock:
                threads.append(thread)
            profiler.start()
            try:
                original(thread)
            finally:
                session = profiler.stop()
                with lock:
                    sessions.append((thread.name, session))

        threading.Thread.run = run  # type: ignore[method-assign,assignment]

    def write(self, directory: Path, prefix: str) -> None:
        from pyinstrument.renderers import ConsoleRenderer
        from pyinstrument.session import Session

        threading.Thread.run = self._original  # type: ignore[method-assign]
        for thread in self._threads:
            thread.join(timeout=10)
        roles: dict[str, Any] = {}
        with self._lock:
            for name, session in self._sessions:
                role = re.sub(r"[_-]\d+$", "", name.replace(prefix, "<prefix>"))
                roles[role] = Session.combine(roles[role], session) if role in roles else session
        directory.mkdir(parents=True, exist_ok=True)
        for role, session in roles.items():
            stem = re.sub(r"[^A-Za-z0-9.-]+", "_", role)
            for flat, suffix in ((False, "tree"), (True, "flat")):
                renderer = ConsoleRenderer(unicode=False, color=False, flat=flat, short_mode=False)
                (directory / f"{stem}.{suffix}.txt").write_text(renderer.render(session))
        warn(f"profiles of {sorted(roles)} written to {directory}")
