"""The throughput benchmark runs end to end (--smoke) and every variant reads every event."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_bench_smoke_reports_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    report = run_smoke("bench.throughput", kafka_bootstrap, database_url, timeout=240)

    events = report["config"]["events"]
    assert events == 2_000 and report["config"]["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    apps, faststreams = ("app-c1", "app-c10"), ("faststream", "faststream-batch")
    assert set(variants) == {"raw-json", "raw-decode", *apps, *faststreams}
    for name, variant in variants.items():
        assert len(variant["rounds"]) == 1, name
        for round_ in variant["rounds"]:
            assert round_["processed"] == events, (name, round_)
            assert round_["rate"] > 0, (name, round_)
        assert variant["median_rate"] > 0, name
    assert variants["raw-json"]["ratio_to_baseline"] == pytest.approx(1.0)
    for name in (*apps, *faststreams):
        assert variants[name]["median_committed_rate"] > 0, name
    for name in faststreams:  # every event recorded once, under FastStream's own group
        assert variants[name]["rounds"][0]["statuses"] == {"succeeded": events}, name
    # FastStream's per-message subscriber writes one transaction per event, the batch one
    # up to 500 per transaction.
    assert variants["faststream"]["median_write_batch"] == pytest.approx(1.0)
    assert variants["faststream-batch"]["median_write_batch"] > 1.0
    versus = {(r["app"], r["faststream"]): r for r in report["versus_faststream"]}
    assert set(versus) == {(a, f) for a in apps for f in faststreams}
    for (app, other), row in versus.items():
        expected = variants[app]["median_rate"] / variants[other]["median_rate"]
        assert row["ratio"] == pytest.approx(expected), (app, other)
        assert row["met"] == (row["ratio"] >= 3.0), (app, other)
    machine = report["machine"]
    assert machine["nproc"] >= 1 and machine["librdkafka"] and machine["postgresql"]
