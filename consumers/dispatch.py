"""Per-key ordered dispatch onto a bounded pool of worker threads (ADR-002).

Events with the same key form a lane and run one after another, in the order they were
submitted; different keys run in parallel on `concurrency` workers. A lane stays busy until
its current job calls `release(key)` - which may be long after the worker returned, because a
job's last step (the batched database commit, the broker's delivery report) completes on
another thread. That is what keeps per-key order across the asynchronous tail of a job.

Workers never die: a job that raises is reported through `on_crash` and its lane released.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Job = Callable[[], None]


class KeyedDispatcher:
    def __init__(
        self,
        concurrency: int,
        *,
        name: str = "worker",
        on_crash: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._lanes: dict[Hashable, deque[Job]] = {}  # key -> jobs waiting behind the busy one
        self._queued = 0  # jobs submitted and not yet released
        self._on_crash = on_crash

    def submit(self, key: Hashable, job: Job) -> None:
        with self._lock:
            self._queued += 1
            lane = self._lanes.get(key)
            if lane is not None:  # the key is busy: wait behind it
                lane.append(job)
                return
            self._lanes[key] = deque()
        self._pool.submit(self._run, key, job)

    def release(self, key: Hashable) -> None:
        """The key's current job is finished: start the next one of that key, if any."""
        with self._lock:
            self._queued -= 1
            lane = self._lanes.get(key)
            if lane is None:
                return
            if not lane:
                del self._lanes[key]
                return
            job = lane.popleft()
        self._pool.submit(self._run, key, job)

    def resubmit(self, key: Hashable, job: Job) -> None:
        """Run a job again while its lane stays busy (a held event's retry in place)."""
        self._pool.submit(self._run, key, job)

    def _run(self, key: Hashable, job: Job) -> None:
        try:
            job()
        except BaseException as exc:  # a worker must survive anything a job does
            # The job could not finish itself: free its lane so the key is not stuck. Its
            # offset stays unfinished, so it is redelivered after a restart, never lost.
            self.release(key)
            if self._on_crash is not None:
                self._on_crash(exc)

    @property
    def queued(self) -> int:
        """Jobs accepted and not yet released (running, waiting in a lane, or completing)."""
        with self._lock:
            return self._queued

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def __enter__(self) -> KeyedDispatcher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
