"""Per-key order, cross-key parallelism, and lanes that outlive the worker call."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

from consumers.dispatch import KeyedDispatcher


def test_same_key_runs_in_submission_order_and_keys_run_in_parallel() -> None:
    seen: dict[str, list[int]] = defaultdict(list)
    lock = threading.Lock()
    done = threading.Semaphore(0)
    running = 0
    peak = 0

    with KeyedDispatcher(10) as dispatcher:

        def job(key: str, n: int) -> None:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.002)
            with lock:
                seen[key].append(n)
                running -= 1
            dispatcher.release(key)
            done.release()

        for n in range(200):
            key = f"k{n % 20}"
            dispatcher.submit(key, lambda key=key, n=n: job(key, n))
        for _ in range(200):
            assert done.acquire(timeout=10)
    for key, numbers in seen.items():
        assert numbers == sorted(numbers), key
    assert peak > 1  # different keys overlapped


def test_lane_stays_busy_until_released_from_another_thread() -> None:
    started: list[int] = []
    with KeyedDispatcher(4) as dispatcher:
        dispatcher.submit("a", lambda: started.append(1))
        dispatcher.submit("a", lambda: started.append(2))
        time.sleep(0.1)
        assert started == [1]  # job 2 waits: job 1 has not released its lane
        assert dispatcher.queued == 2
        dispatcher.release("a")
        time.sleep(0.1)
        assert started == [1, 2]


def test_a_crashing_job_frees_its_lane_and_the_worker_survives() -> None:
    crashes: list[BaseException] = []
    ran = threading.Event()
    with KeyedDispatcher(1, on_crash=crashes.append) as dispatcher:

        def boom() -> None:
            raise RuntimeError("bug")

        dispatcher.submit("a", boom)
        dispatcher.submit("a", ran.set)
        assert ran.wait(2)
    assert len(crashes) == 1
