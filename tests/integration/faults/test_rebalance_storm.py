"""Fault (c): a rebalance storm - instances started and stopped (SIGTERM or SIGKILL at random)
every 0.5-2 s for ~20 s (60 s at soak), the RNG seed printed (QCHEM_STORM_SEED replays it)."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.topics import create_topics
from tests.support.app import AppProcess, assert_no_crash, kill_alive
from tests.support.faults import (
    SCALE,
    load_events,
    log_tail,
    tagged_events,
)
from tests.support.oracle import Oracle

MAX_ALIVE = 3
RATE = 150  # events per second during the storm

# How a SIGTERMed app ends: 0, a clean shutdown; -SIGTERM, the signal came before its handler
# was installed (still importing): it had not joined the group, so there is nothing to leave.
STOPPED = (0, -signal.SIGTERM)


def test_rebalance_storm_loses_nothing_and_applies_nothing_twice(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"event_types": ("ChemicalStatus",), "topic_partitions": 6}
    )
    create_topics(settings)
    seed = int(os.environ.get("QCHEM_STORM_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    print(f"\nrebalance storm seed {seed} (QCHEM_STORM_SEED={seed} replays the schedule)")
    storm_s = 20.0 * SCALE
    events = tagged_events(
        "ChemicalStatus", int(RATE * (storm_s + 10)), tag=settings.topic_prefix, keys=300
    )
    oracle = Oracle(settings, db_engine, name="rebalance-storm")
    everyone: list[AppProcess] = []
    alive: list[AppProcess] = []
    stopping: list[AppProcess] = []  # SIGTERMed, still shutting down

    def launch() -> AppProcess:
        app = AppProcess(settings, tmp_path / f"app{len(everyone)}.log")
        everyone.append(app)
        app.start()
        alive.append(app)
        return app

    starts = terms = kills = 0
    started = time.monotonic()
    try:
        launch()
        starts += 1
        load = load_events(settings, events, RATE)
        storm_end = time.monotonic() + storm_s
        while time.monotonic() < storm_end:
            time.sleep(rng.uniform(0.5, 2.0))
            alive[:] = [a for a in alive if a.alive()]
            if not alive or (len(alive) < MAX_ALIVE and rng.random() < 0.5):
                launch()
                starts += 1
                continue
            victim = alive.pop(rng.randrange(len(alive)))
            assert victim.process is not None
            if rng.random() < 0.5:
                victim.process.send_signal(signal.SIGTERM)  # graceful: leaves the group
                stopping.append(victim)
                terms += 1
            else:
                victim.kill()  # its partitions wait for the session timeout
                kills += 1
        if not [a for a in alive if a.alive()]:
            launch()
            starts += 1
        calm = time.monotonic()
        load.stop()
        oracle.expect(record.tag for record in load.join())
        drain_s = oracle.wait_drained(calm, timeout=150)
        for app in stopping:
            assert app.process is not None
            assert app.process.wait(timeout=60) in STOPPED, log_tail(app.log_path)
        for app in alive:
            # An app launched late in the storm may still be importing when the drain is done
            # (seed 3395783755 failed 'assert -15 == 0' here): the same two outcomes.
            if app.alive():
                assert app.terminate() in STOPPED, log_tail(app.log_path)
    finally:
        kill_alive(everyone)
    assert_no_crash(everyone)
    report = oracle.check(faults=starts + terms + kills, drain_s=drain_s)
    report.extra.update(
        seed=seed,
        starts=starts,
        sigterm=terms,
        sigkill=kills,
        total_s=round(time.monotonic() - started, 1),
    )
    print(report.summary())
    report.assert_clean()
