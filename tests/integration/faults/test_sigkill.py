"""Fault (a): the consumer process SIGKILLed 10 times during a run, restarted each time."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy.engine import Engine

from common.settings import Settings
from ops.topics import create_topics
from tests.support.app import AppProcess
from tests.support.faults import (
    event_records,
    log_tail,
    names,
    processed,
    produce_now,
    scaled,
    tagged_events,
)
from tests.support.oracle import Oracle


def test_sigkill_ten_times_mid_run_loses_nothing_and_applies_nothing_twice(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    create_topics(settings)
    group = names(settings, "ChemicalStatus").group
    total, kills = scaled(5000), scaled(10)
    events = tagged_events("ChemicalStatus", total, tag=settings.topic_prefix, keys=200)
    size = -(-total // (kills + 1))
    batches = [events[i : i + size] for i in range(0, total, size)]
    oracle = Oracle(settings, db_engine, name="sigkill")
    app = AppProcess(settings, tmp_path / "app.log")
    recoveries: list[float] = []  # restart -> first new effect (includes the session timeout)
    started = time.monotonic()
    try:
        for i in range(kills):
            batch = batches[i] if i < len(batches) else []
            produce_now(settings.kafka_bootstrap_servers, event_records(settings, batch))
            oracle.expect(batch)
            before = processed(db_engine, group)
            target = before + max(1, len(batch) // 2)  # half of it still in flight at the kill
            restarted = time.monotonic()
            app.start()
            first_progress = None
            deadline = restarted + 90
            while (done := processed(db_engine, group)) < target:
                if first_progress is None and done > before:
                    first_progress = time.monotonic()
                assert time.monotonic() < deadline, (
                    f"no progress in life {i}:\n{log_tail(app.log_path)}"
                )
                assert app.alive(), f"the app died by itself:\n{log_tail(app.log_path)}"
                time.sleep(0.05)
            recoveries.append((first_progress or time.monotonic()) - restarted)
            app.kill()
        rest = [e for b in batches[kills:] for e in b]
        produce_now(settings.kafka_bootstrap_servers, event_records(settings, rest))
        oracle.expect(rest)
        restarted = time.monotonic()
        app.start()
        drain_s = oracle.wait_drained(restarted, timeout=120)
        assert app.terminate() == 0, log_tail(app.log_path)
    finally:
        if app.alive():
            app.kill()
    report = oracle.check(faults=kills, drain_s=drain_s)
    report.extra["recover_max_s"] = round(max(recoveries), 1)
    report.extra["recover_mean_s"] = round(sum(recoveries) / len(recoveries), 1)
    report.extra["total_s"] = round(time.monotonic() - started, 1)
    print("\n" + report.summary())
    report.assert_clean()
