"""Runs over chemical look-ups and reports, and events about a run's own entities (ids under
its entity prefix, so their rows are its own too)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from common.settings import Settings
from devtools.devservers import ChemicalApiServer
from devtools.scenarios.runner import ScenarioRun, entity_pattern
from schemas.events import Event
from schemas.samples import sample_events


@contextmanager
def lookup_run(
    settings: Settings, name: str, **overrides: Any
) -> Iterator[tuple[ScenarioRun, ChemicalApiServer]]:
    """A run over ChemicalLookup and Report events, with a chemical API of its own."""
    with (
        ChemicalApiServer(port=0) as api,
        ScenarioRun(
            settings, name, ("ChemicalLookup", "Report"), chemical_api_url=api.url, **overrides
        ) as run,
    ):
        yield run, api


def lookups_and_reports(
    run: ScenarioRun, lookups: int, reports: int
) -> tuple[list[Event], list[Event]]:
    """`lookups` ChemicalLookup and `reports` Report events of the run's own chemicals and
    reports; the rows they leave are deleted when the run closes."""
    prefix, pattern = run.entity_prefix, entity_pattern(run.entity_prefix)
    run.on_cleanup("DELETE FROM chemical_lookups WHERE chemical_id LIKE :p", p=pattern)
    run.on_cleanup("DELETE FROM reports WHERE report_id LIKE :p", p=pattern)
    looked = [
        replace(e, key=chemical, payload=replace(e.payload, chemical_id=chemical))
        for n, e in enumerate(sample_events("ChemicalLookup", lookups), start=1)
        for chemical in [f"{prefix}-{n:05d}"]
    ]
    reported = [
        replace(e, key=report_id, payload=replace(e.payload, report_id=report_id))
        for n, e in enumerate(sample_events("Report", reports), start=1)
        for report_id in [f"{prefix}-RPT-{n:05d}"]
    ]
    return looked, reported
