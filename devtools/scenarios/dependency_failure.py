"""Scenario 5, "Cross-System Dependency Failure".

Trigger: the external chemical database API returns 500s. A real HTTP server
(devtools.devservers.ChemicalApiServer in "error500" mode) answers every look-up with a 500 - while
its /health endpoint still answers 200, as a real half-broken service does.

What must happen, in the document's order:
* the circuit breaker detects the failures and opens (BREAKER_FAIL_MAX=3 here), so the API
  sees at most one probe per BREAKER_RESET_TIMEOUT_S instead of a retry storm;
* each look-up is retried with exponential backoff and reaches the DLQ after exactly 3
  retries (attempt 4, reason "exhausted") - ChemicalLookup is not auto-redriven: business
  critical, "manual review required";
* health shows the dependency down: the breaker state the running application exports on
  /metrics (what `qchem-events health` reads) - the API's own /health is no help here;
* the rest degrades gracefully: Report events produced meanwhile all succeed at once;
* the API recovers, the operator replays the DLQ (the `qchem-events dlq replay` code path,
  ops.dlq_replay), and the replayed look-ups succeed.

Promise: system resilience, graceful degradation.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

from common.settings import Settings
from devtools.devservers import ChemicalApiServer
from devtools.scenarios.dashboard import Outcome
from devtools.scenarios.entities import lookup_run, lookups_and_reports
from devtools.scenarios.runner import RawRecord, ScenarioRun
from ops.health import breaker_states, check_chemical_api
from retry_topics import headers as rh
from schemas.events import Event
from storage.secrets import replay_signing_key

NAME = "dependency-failure"
TITLE = "Cross-System Dependency Failure"
PROMISE = "System resilience, graceful degradation"
FAIL_MAX = 3
RESET_S = 0.5
REPLAY_RUNS = 3  # replays of what the broker did not confirm (a replay skips what it sent)


def run(settings: Settings, *, lookups: int = 10, reports: int = 50) -> Outcome:
    """`lookups` ChemicalLookup events while the API fails, `reports` Reports alongside."""
    with lookup_run(settings, NAME, breaker_fail_max=FAIL_MAX, breaker_reset_timeout_s=RESET_S) as (
        scenario,
        api,
    ):
        api.set_mode("error500")
        return _run(scenario, api, lookups, reports)


def _by_type(run: ScenarioRun, event_type: str, status: str) -> int:
    return sum(1 for r in run.rows() if r.event_type == event_type and r.status == status)


def _run(run: ScenarioRun, api: ChemicalApiServer, lookups: int, reports: int) -> Outcome:
    looked, reported = lookups_and_reports(run, lookups, reports)
    health: dict[str, Any] = {}
    with run.running() as app:
        sent = time.time()
        run.produce_events(looked + reported)
        run.timeline.mark(
            f"{lookups} ChemicalLookup + {reports} Report events produced; the API answers 500",
            sent,
        )
        degraded_ok = run.wait(
            lambda: _by_type(run, "Report", "succeeded") >= reports,
            timeout=30,
            what=f"{reports} reports succeeded during the outage",
        )
        if degraded_ok:
            run.timeline.mark(f"all {reports} Report events succeeded meanwhile")
        run.wait(
            lambda: _by_type(run, "ChemicalLookup", "dlq") >= lookups,
            timeout=30 + 8 * lookups,
            what=f"{lookups} look-ups in the DLQ",
        )
        calls_during_outage = Counter(api.event_ids)
        assert app.health is not None
        on_metrics = run.settings.model_copy(update={"metrics_port": app.health.port})
        health = {
            "chemical_api": check_chemical_api(run.settings),  # its own /health endpoint
            "breakers": breaker_states(on_metrics),  # what `qchem-events health` reads
            "app_breaker": app.breakers.get("chemical_api").state,  # the App's own guard
        }
        state = health["breakers"].get("breakers", {}).get("chemical_api", "?")
        run.timeline.mark(
            f"health: API /health {health['chemical_api']['status']}, breaker chemical_api "
            f"{state} -> dependency {health['breakers']['status'].upper()}"
        )
        api.set_mode("ok")
        run.timeline.mark("chemical API recovered")
        asked = time.time()
        replayed, how = replay_dlq(run, "ChemicalLookup")
        run.timeline.mark(f"operator replays the DLQ: {replayed} records ({how})", asked)
        run.wait(
            lambda: _by_type(run, "ChemicalLookup", "succeeded") >= lookups,
            timeout=60,
            what=f"{lookups} replayed look-ups succeeded",
        )
        run.mark_finished(f"all {lookups} replayed look-ups succeeded")

    _check(run, looked, calls_during_outage, health, replayed)
    return run.outcome(TITLE, PROMISE)


def replay_dlq(run: ScenarioRun, event_type: str) -> tuple[int, str]:
    """Replay the type's DLQ the way the runbook does; (records sent, how)."""
    try:
        from ops.dlq import Filters
        from ops.dlq_replay import plan_replay, run_replay
    except ImportError:  # the runbook command is not there: send them back by hand
        return _replay_by_hand(run, event_type), "produced back with redrive headers"
    filters = Filters()
    replayed, failed = 0, 0
    for _ in range(REPLAY_RUNS):  # what an operator does when some records were not confirmed
        plan = plan_replay(run.settings, run.engine, event_type, filters, include_replayed=False)
        if not plan.to_send:
            break
        result = run_replay(
            run.settings,
            run.engine,
            plan,
            filter_json=filters.as_json(),
            rate=1000.0,
            dry_run=False,
        )
        run.on_cleanup("DELETE FROM dlq_replays WHERE id = :r", r=result.replay_id)  # if 0 sent
        replayed, failed = replayed + result.replayed, len(result.failed)
        if not failed:
            break
        time.sleep(2)
    how = "ops.dlq_replay, as `qchem-events dlq replay`"
    return replayed, how + (f"; {failed} not confirmed by the broker" if failed else "")


def _replay_by_hand(run: ScenarioRun, event_type: str) -> int:
    names = run.names(event_type)
    replay_id = f"scenario-{uuid.uuid4()}"
    key = replay_signing_key(run.engine)
    records: list[RawRecord] = [
        (r.key, r.value, rh.redrive_headers(r.headers, replay_id=replay_id, key=key))
        for r in run.read_topic(names.dlq)
    ]
    return len(run.produce(names.main, records))


def _check(
    run: ScenarioRun,
    looked: list[Event],
    calls: Counter[str | None],
    health: dict[str, Any],
    replayed: int,
) -> None:
    lookups = len(looked)
    states = run.watch.breaker_states.get("chemical_api", []) if run.watch else []
    run.check("the breaker opened", "open" in states, " -> ".join(states))
    dlq = run.read_topic(run.names("ChemicalLookup").dlq)
    exhausted = [
        r
        for r in dlq
        if rh.as_dict(r.headers).get(rh.ATTEMPT) == b"4"
        and rh.as_dict(r.headers).get(rh.DLQ_REASON) == b"exhausted"
    ]
    run.check(
        "after 3 retries each look-up reached the DLQ",
        len(dlq) == len(exhausted) == lookups,
        f"{len(exhausted)}/{lookups} dead-lettered at attempt 4 (exhausted)",
    )
    per_event = [calls.get(e.event_id, 0) for e in looked]
    run.check(
        "the API saw exactly 1 + 3 calls per look-up while failing (no retry storm)",
        all(n == 4 for n in per_event),
        f"{sum(per_event)} calls for {lookups} look-ups",
    )
    breakers = health.get("breakers", {})
    run.check(
        "health shows the dependency down",
        breakers.get("status") == "down"
        and breakers.get("breakers", {}).get("chemical_api") == "open"
        and health.get("app_breaker") == "open",
        f"breaker chemical_api {breakers.get('breakers', {}).get('chemical_api')} on /metrics "
        f"and {health.get('app_breaker')} in the App, API /health "
        f"{health['chemical_api']['status']}",
    )
    reports = sum(1 for r in run.rows() if r.event_type == "Report" and r.status == "succeeded")
    run.check(
        "graceful degradation: every Report succeeded during the outage",
        reports > 0 and all(r.attempts == 1 for r in run.rows() if r.event_type == "Report"),
        f"{reports} reports succeeded on attempt 1",
    )
    succeeded = _by_type(run, "ChemicalLookup", "succeeded")
    run.check(
        "replay works: the replayed look-ups succeeded",
        replayed == lookups and succeeded == lookups,
        f"{replayed} replayed, {succeeded}/{lookups} succeeded",
    )
    run.facts.update(health_during_outage=health, api_calls_during_outage=sum(per_event))
    run.highlights += [
        f"breaker chemical_api: {' -> '.join(states)} (fail max {FAIL_MAX}, reset {RESET_S} s)",
        f"API calls while failing: {sum(per_event)} for {lookups} look-ups (1 + 3 retries each)",
        f"health during the outage: API /health {health['chemical_api']['status']} (process up), "
        f"breaker {breakers.get('breakers', {}).get('chemical_api')} -> dependency "
        f"{str(breakers.get('status')).upper()}",
    ]
