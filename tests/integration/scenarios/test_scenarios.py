"""The five production scenarios (`python -m devtools scenario`), each a real run with real faults.

Assertions are on the returned outcome's data - the dashboard the run computed from its own
event records, retry tiers and DLQ, and the facts measured at the fault injection points -
not only on its printout. Sizes are the document's where it matters (the cascade stays at
1,000 events) and smaller elsewhere, to keep this module near two minutes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from common.settings import Settings
from devtools.scenarios import (
    chemical_cascade,
    db_pool_exhaustion,
    dependency_failure,
    email_outage,
    malformed,
)
from ops.topics import admin_client, existing_topics
from tests.support.app import settings_env

pytestmark = pytest.mark.integration

DEVTOOLS = [sys.executable, "-m", "devtools"]  # from the checkout: not in the wheel
ROOT = Path(__file__).resolve().parents[3]


def explain(outcome: Any) -> str:
    """Every check and the timeline: what a failed scenario test needs to be understood."""
    lines = [*outcome.reasons, *(f"t{m.t_s:+.1f}s {m.text}" for m in outcome.timeline)]
    return "\n".join(lines)


def later_attempts(outcome: Any) -> int:
    attempts = outcome.dashboard["retry_analysis"]["success_on_attempt"]
    return sum(entry["count"] for attempt, entry in attempts.items() if attempt != "1")


def leftovers(settings: Settings, prefix: str) -> tuple[list[str], int]:
    """Topics, event records and replay marks a finished run left behind (none, it should)."""
    topics = [t for t in existing_topics(admin_client(settings), settings) if t.startswith(prefix)]
    engine = create_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM event_records WHERE consumer_group LIKE :p) "
                    "+ (SELECT count(*) FROM dlq_replayed_records WHERE dlq_topic LIKE :p)"
                ),
                {"p": prefix + "%"},
            ).scalar_one()
    finally:
        engine.dispose()
    return topics, rows


def test_chemical_cascade_1000_events_all_succeed_despite_locks_and_a_slow_api(
    settings: Settings,
) -> None:
    outcome = chemical_cascade.run(settings, events=1000)
    assert outcome.passed, explain(outcome)
    rate = outcome.dashboard["success_rate"]["ChemicalStatus"]
    assert (rate["succeeded"], rate["total"], rate["success_rate"]) == (1000, 1000, 1.0)
    retry = outcome.dashboard["retry_analysis"]
    assert retry["sent_to_dlq"]["count"] == 0
    assert later_attempts(outcome) >= 50  # 30 locked rows + 20 slow API calls, each retried
    assert retry["success_on_attempt"]["1"]["count"] == 1000 - later_attempts(outcome)
    assert outcome.facts["lock_timeouts"] >= 30 and outcome.facts["api_timeouts"] >= 20
    p = outcome.dashboard["processing_ms"]
    assert p["events"] == 1000 and p["p50"] <= p["p90"] <= p["p99"] <= p["max"]
    texts = [m.text for m in outcome.timeline]
    assert any("database lock timeout" in t and "retry-1s" in t for t in texts), texts
    assert any("external API timeout" in t for t in texts), texts
    assert leftovers(settings, outcome.run_prefix) == ([], 0)


def test_chemical_cascade_releases_a_lock_only_after_its_events_attempts_failed(
    settings: Settings,
) -> None:
    """100 events: 3 locked rows (1 released after one failed attempt, RETRY_AGAIN after two)
    and 2 slow API chemicals. The writer runs an event's `apply` twice in one attempt
    (optimistically, then in a savepoint): a lock released on the handler's count of lock
    timeouts after the first pass let the second one succeed at attempt 1 - the flake CI saw
    on a loaded machine (49/50 on attempt 2 or later), and here most runs with a lone row."""
    outcome = chemical_cascade.run(settings, events=100)
    assert outcome.passed, explain(outcome)
    attempts = outcome.dashboard["retry_analysis"]["success_on_attempt"]
    by_attempt = {int(a): entry["count"] for a, entry in attempts.items()}
    assert sum(n for a, n in by_attempt.items() if a >= 2) == 5, by_attempt
    assert sum(n for a, n in by_attempt.items() if a >= 3) >= chemical_cascade.RETRY_AGAIN
    assert leftovers(settings, outcome.run_prefix) == ([], 0)


def test_email_outage_every_email_delivered_exactly_once(settings: Settings) -> None:
    outcome = email_outage.run(settings, emails=50, window_s=4.0)
    assert outcome.passed, explain(outcome)
    facts = outcome.facts
    assert (facts["messages_at_sink"], facts["lost"], facts["duplicates"]) == (50, 0, 0)
    assert "open" in facts["breaker_states"]["smtp"]
    assert outcome.dashboard["success_rate"]["Email"]["succeeded"] == 50


def test_email_outage_without_the_breaker_goes_through_the_dlq_monitor(
    settings: Settings,
) -> None:
    """The document's literal flow: attempts 1, 2, 3, DLQ, redriven by the monitor."""
    # 8 s: attempts 1, 2, 3 take ~3.5 s, so every email reaches the DLQ within the window.
    outcome = email_outage.run(settings, emails=20, window_s=8.0, breaker_fail_max=1000)
    assert outcome.passed, explain(outcome)
    dlq = outcome.dashboard["retry_analysis"]["sent_to_dlq"]
    assert dlq["count"] == dlq["recovered"] == 20
    assert (outcome.facts["messages_at_sink"], outcome.facts["duplicates"]) == (20, 0)
    assert any("redriven by the DLQ monitor" in m.text for m in outcome.timeline)
    assert leftovers(settings, outcome.run_prefix) == ([], 0)


def test_db_pool_exhaustion_recovers_without_a_manual_step(settings: Settings) -> None:
    outcome = db_pool_exhaustion.run(settings, lookups=150, reports_count=50, reporting_s=2.0)
    assert outcome.passed, explain(outcome)
    rates = outcome.dashboard["success_rate"]
    assert rates["ChemicalLookup"]["succeeded"] == 150 and rates["Report"]["succeeded"] == 50
    assert outcome.facts["pool"]["max_in_use"] == db_pool_exhaustion.POOL_SIZE
    assert outcome.facts["pool_timeouts_held"] > 0
    assert outcome.facts["retried_by_pool"] == 0
    assert outcome.dashboard["retry_analysis"]["sent_to_dlq"]["count"] == 0


def test_malformed_events_are_invalid_in_the_dlq_with_their_bytes_and_never_retried(
    settings: Settings,
) -> None:
    outcome = malformed.run(settings, valid=100)
    assert outcome.passed, explain(outcome)
    variants = outcome.facts["variants"]
    assert len(variants) == 13
    for v in variants:
        assert v["in_dlq"] and v["original_bytes"] and v["key_and_headers_kept"], v
        assert v["reason"] == v["expected_reason"] and v["attempt"] == "1", v
    rate = outcome.dashboard["success_rate"]["ChemicalStatus"]
    assert (rate["succeeded"], rate["invalid"], rate["dlq"]) == (100, 13, 0)
    dlq = outcome.dashboard["retry_analysis"]["sent_to_dlq"]
    assert (dlq["count"], dlq["invalid"]) == (13, 13)
    assert later_attempts(outcome) == 0


def test_dependency_failure_breaker_dlq_health_and_replay(settings: Settings) -> None:
    outcome = dependency_failure.run(settings, lookups=4, reports=20)
    assert outcome.passed, explain(outcome)
    health = outcome.facts["health_during_outage"]
    assert health["breakers"]["breakers"]["chemical_api"] == "open"
    assert health["breakers"]["status"] == "down"
    assert outcome.facts["api_calls_during_outage"] == 4 * 4
    dlq = outcome.dashboard["retry_analysis"]["sent_to_dlq"]
    assert dlq["count"] == dlq["recovered"] == 4
    assert outcome.dashboard["success_rate"]["Report"]["succeeded"] == 20
    assert leftovers(settings, outcome.run_prefix) == ([], 0)


def test_cli_scenario_malformed_json_twice_in_a_row(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings)}
    prefixes = []
    for _ in range(2):
        proc = subprocess.run(
            [*DEVTOOLS, "scenario", "malformed", "--json"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        data = json.loads(proc.stdout)
        assert data["scenario"] == "malformed" and data["passed"] is True, data["reasons"]
        assert data["dashboard"]["success_rate"]["ChemicalStatus"]["invalid"] == 13
        assert all(v["original_bytes"] for v in data["facts"]["variants"])
        assert "event_invalid" in proc.stderr  # logged with its payload
        prefixes.append(data["run_prefix"])
    assert prefixes[0] != prefixes[1]
    assert leftovers(settings, prefixes[0]) == ([], 0)


def test_cli_unknown_scenario_is_a_usage_error(settings: Settings) -> None:
    env = {**os.environ, **settings_env(settings)}
    proc = subprocess.run(
        [*DEVTOOLS, "scenario", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "unknown scenario 'nope'" in proc.stderr and "chemical-cascade" in proc.stderr
