"""Fault (f): the SMTP server and the chemical API flapping - stopped and started every 2-3 s
for ~15 s (60 s at soak) - under Email and ChemicalLookup events.

Emails must all be delivered in the end (the DLQ monitor redrives the exhausted ones once the
breaker closes); look-ups must each have succeeded or be in the DLQ with a reason.
"""

from __future__ import annotations

import os
import random
import threading
import time

from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import ChemicalApiServer, SmtpSink
from tests.support.app import running_app
from tests.support.faults import (
    SCALE,
    interleave,
    load_events,
    tagged_events,
)
from tests.support.oracle import Oracle, dlq_reasons

RATE = 60  # events per second (half emails, half look-ups) while the dependencies flap


class Flapper:
    """Stops and starts a server every 2-3 s on a thread; remembers when it stopped it."""

    def __init__(self, server: SmtpSink | ChemicalApiServer, rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.stops: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flapper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.rng.uniform(2.0, 3.0)):
            if self.server.running:
                self.stops.append(time.monotonic())
                self.server.stop()
            else:
                self.server.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        self.server.start()  # up for good


def test_smtp_and_chemical_api_flapping(
    handler_settings: Settings,
    db_engine: Engine,
    smtp_sink: SmtpSink,
    chemical_api: ChemicalApiServer,
) -> None:
    settings = handler_settings.model_copy(
        update={
            "event_types": ("Email", "ChemicalLookup"),
            "breaker_reset_timeout_s": 1.0,
            # No retry tier for emails: a send that fails before the breaker opens (or as its
            # probe) is exhausted at once, so the DLQ monitor's redrive must deliver it.
            # With tiers the breaker holds emails in place and they rarely reach the DLQ.
            "retries_per_type": {"Email": 0},
            "dlq_redrive_interval_s": 2.0,
        }
    )
    seed = int(os.environ.get("QCHEM_FLAP_SEED") or random.randrange(2**32))
    print(f"\nflapping seed {seed} (QCHEM_FLAP_SEED={seed} replays the schedule)")
    flap_s = 15.0 * SCALE
    tag = settings.topic_prefix
    count = int(RATE / 2 * (flap_s + 5))
    events = interleave(
        tagged_events("Email", count, tag=tag), tagged_events("ChemicalLookup", count, tag=tag)
    )
    oracle = Oracle(settings, db_engine, name="flapping", smtp=smtp_sink, must_succeed={"Email"})
    flappers = [
        Flapper(smtp_sink, random.Random(seed)),
        Flapper(chemical_api, random.Random(~seed)),
    ]
    started = time.monotonic()
    try:
        with running_app(settings) as app:
            load = load_events(settings, events, RATE)
            time.sleep(1.0)
            for flapper in flappers:
                flapper.start()
            time.sleep(flap_s)
            load.stop()
            for flapper in flappers:
                flapper.stop()
            calm = time.monotonic()
            oracle.expect(record.tag for record in load.join())
            drain_s = oracle.wait_drained(calm, timeout=150)
            probes = {name: guard.probes for name, guard in app.breakers.all().items()}
            assert not app.failed.is_set(), "a listener crashed"
    finally:
        smtp_sink.start()
        chemical_api.start()
    report = oracle.check(
        faults=sum(len(f.stops) for f in flappers),
        drain_s=drain_s,
        fault_times=flappers[0].stops,  # an SMTP session cut after the server accepted
    )
    report.extra.update(
        seed=seed,
        smtp_stops=len(flappers[0].stops),
        api_stops=len(flappers[1].stops),
        email_dlq=dict(dlq_reasons(settings, "Email")),
        lookup_dlq=dict(dlq_reasons(settings, "ChemicalLookup")),
        probes=probes,
        total_s=round(time.monotonic() - started, 1),
    )
    print(report.summary())
    report.assert_clean()
