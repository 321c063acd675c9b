"""The real-handler benchmark (issue 13) runs end to end (--smoke): `qchem-events run` with
the real ChemicalStatus, Report and Email handlers applies every event once."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_real_handlers_smoke_applies_every_event_once(
    kafka_bootstrap: str, database_url: str
) -> None:
    report = run_smoke("bench.real_handlers", kafka_bootstrap, database_url, timeout=300)

    events = report["events"]
    assert events == 1_000 and report["rounds"] == 1
    types = {t["event_type"]: t for t in report["types"]}
    assert set(types) == {"ChemicalStatus", "Report", "Email"}
    for name, row in types.items():
        [round_] = row["rounds"]
        app = round_["app"]
        assert app["statuses"] == {"succeeded": events}, name
        assert app["emails"] == (events if name == "Email" else 0), name
        assert row["app_rate"] > 0 and row["raw_json_rate"] > 0, name
        assert row["ratio_to_raw_json"] == pytest.approx(row["app_rate"] / row["raw_json_rate"])
        # CPU was read for the app, PostgreSQL and the broker while the app ran.
        assert set(row["cpu_us_per_event"]) == {"app", "postgresql", "broker"}, name
        assert row["cpu_us_per_event"]["app"] > 0, name
