"""Scenario 2, "Email Service Outage Recovery".

Trigger: the SMTP server's maintenance window. A real SMTP server (devtools.devservers.SmtpSink)
is stopped - clients get ECONNREFUSED - while the emails arrive, and started again on the
same port after the window. In between the application does what it was built to do: the
first failures go through the retry tiers (Email: attempts 1, 2, 3, then the DLQ), the smtp
breaker opens and holds the rest in place, probing once per BREAKER_RESET_TIMEOUT_S; what
exhausted its attempts waits in the DLQ until the DLQ monitor (every DLQ_REDRIVE_INTERVAL_S,
only while the breaker is closed) sends it back.

Counted at the SMTP server, by the X-Event-ID every message carries: zero emails lost, and
none delivered twice. Promise: "zero lost emails, delayed but delivered".
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from common.settings import Settings
from devtools.devservers import SmtpSink
from devtools.scenarios.dashboard import Check, Outcome
from devtools.scenarios.runner import ScenarioRun
from schemas.samples import sample_events

NAME = "email-outage"
TITLE = "Email Service Outage Recovery"
PROMISE = "Zero lost emails, delayed but delivered"
BREAKER_RESET_S = 1.0
REDRIVE_INTERVAL_S = 2.0


def run(
    settings: Settings,
    *,
    emails: int = 200,
    window_s: float = 8.0,
    breaker_fail_max: int | None = None,
) -> Outcome:
    """`emails` arrive during a maintenance window of `window_s` seconds.

    With the breaker's usual threshold it opens after a few refused connections and holds
    the emails in place, so few or none exhaust their attempts. `breaker_fail_max` above the
    number of failures replays the document's literal flow instead - attempts 1, 2, 3, the
    DLQ, redriven by the DLQ monitor during the window and after it - the path the breaker
    otherwise only takes for failures below its threshold.
    """
    overrides: dict[str, Any] = {}
    if breaker_fail_max is not None:
        overrides["breaker_fail_max"] = breaker_fail_max
    with (
        SmtpSink(port=0) as sink,
        ScenarioRun(
            settings,
            NAME,
            ("Email",),
            smtp_host=sink.host,
            smtp_port=sink.port,
            breaker_reset_timeout_s=BREAKER_RESET_S,
            dlq_redrive_interval_s=REDRIVE_INTERVAL_S,
            auto_redrive_types=("Email",),
            **overrides,
        ) as scenario,
    ):
        return _run(scenario, sink, emails, window_s)


def _check_deliveries(
    run: ScenarioRun, sink: SmtpSink, wanted: set[str]
) -> tuple[Counter[str | None], set[str], dict[str | None, int], list[str]]:
    """Nothing lost, nothing twice, every email recorded, the breaker opened: (messages by
    event id, lost, duplicated, the smtp breaker's states)."""
    count = len(wanted)
    received = Counter(m.event_id for m in sink.messages)
    lost = wanted - set(received)
    duplicates = {event_id: n for event_id, n in received.items() if n > 1}
    strangers = set(received) - wanted
    statuses = run.status_counts()
    run.check("zero emails lost", not lost, f"{len(wanted) - len(lost)}/{count} delivered")
    run.check(
        "each email delivered exactly once",
        not duplicates and not strangers and sum(received.values()) == count,
        f"{sum(received.values())} messages at the SMTP server, {len(duplicates)} duplicated",
    )
    run.check(
        f"{count}/{count} recorded as succeeded",
        statuses.get("succeeded", 0) == count and sum(statuses.values()) == count,
        str(statuses),
    )
    states = run.watch.breaker_states.get("smtp", ["closed"]) if run.watch else []
    if run.settings.breaker_fail_max <= count:
        run.check("the smtp breaker opened during the outage", "open" in states, "->".join(states))
    return received, lost, duplicates, states


def _run(run: ScenarioRun, sink: SmtpSink, count: int, window_s: float) -> Outcome:
    events = sample_events("Email", count)
    wanted = {e.event_id for e in events}
    with run.running() as app:
        sink.stop()
        run.timeline.mark(f"SMTP server stopped: maintenance window of {window_s:.0f} s")
        sent = time.time()
        run.produce_events(events)
        run.timeline.mark(f"{count} emails produced", sent)
        time.sleep(max(0.0, window_s - (time.time() - sent)))
        guard = app.breakers.get("smtp")
        during = {"state": guard.state, "probes": guard.probes}
        dead_during = run.status_counts().get("dlq", 0)
        sink.start()
        run.timeline.mark(
            f"SMTP server back (breaker {during['state']}, {dead_during} emails in the DLQ)"
        )
        run.wait(
            lambda: (
                wanted <= {m.event_id for m in sink.messages}
                and run.status_counts().get("succeeded", 0) >= count
            ),
            timeout=120,
            what=f"all {count} emails delivered",
        )
        run.mark_finished(f"all {count} emails delivered and recorded")
        time.sleep(1.5)  # anything arriving now would be a duplicate delivery

    received, lost, duplicates, states = _check_deliveries(run, sink, wanted)
    outcome = run.outcome(TITLE, PROMISE)
    via_dlq = outcome.dashboard["retry_analysis"]["sent_to_dlq"]
    if via_dlq["count"]:
        outcome.checks.append(
            Check(
                "every dead-lettered email redriven by the DLQ monitor and delivered",
                via_dlq["recovered"] == via_dlq["count"],
                f"{via_dlq['recovered']}/{via_dlq['count']} recovered from the DLQ",
            )
        )
    outcome.facts.update(
        emails=count,
        window_s=window_s,
        breaker_during_outage=during,
        in_dlq_when_smtp_returned=dead_during,
        messages_at_sink=sum(received.values()),
        duplicates=len(duplicates),
        lost=len(lost),
    )
    outcome.highlights += [
        f"SMTP server: {sum(received.values())} messages for {count} emails "
        f"({len(lost)} lost, {len(duplicates)} duplicated)",
        f"breaker smtp: {' -> '.join(states)}; {during['probes']} probes during the window "
        f"(one per {BREAKER_RESET_S:.0f} s at most)",
        f"{via_dlq['count']} emails exhausted their attempts and waited in the DLQ; "
        f"{via_dlq['recovered']} redriven by the DLQ monitor (every {REDRIVE_INTERVAL_S:.0f} s) "
        "and delivered"
        + ("" if via_dlq["count"] else " (the open breaker held them in place instead)"),
    ]
    return outcome
