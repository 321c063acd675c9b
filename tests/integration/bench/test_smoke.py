"""Every benchmark runs end to end in its CI size (`python -m bench.<name> --smoke --json`),
and its report is complete: one test each, on the report the shared driver prints.
"""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_bench_smoke_reports_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    """The throughput benchmark runs end to end (--smoke) and every variant reads every event."""
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


def test_scaling_smoke_reports_every_concurrency(kafka_bootstrap: str, database_url: str) -> None:
    """The concurrency-scaling benchmark runs end to end (--smoke) and its report is complete."""
    report = run_smoke("bench.scaling", kafka_bootstrap, database_url, timeout=180)

    assert report["config"]["rounds"] == 1 and report["config"]["sleep_ms"] == 20
    assert report["config"]["app_settings"]["max_in_flight"] >= 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"one-at-a-time", "app-c1", "app-c10", "app-c50", "app-c100"}
    for name, variant in variants.items():
        # Sized from the ideal rate: 20 ms per event per worker.
        assert variant["ideal_rate"] == pytest.approx(variant["concurrency"] / 0.020), name
        assert variant["events"] >= 20, name
        (round_,) = variant["rounds"]
        assert round_["events"] == variant["events"], name
        assert round_["processed"] == variant["events"], (name, round_)
        assert round_["rate"] > 0 and round_["seconds"] > 0, (name, round_)
        # Nothing can beat the ideal: each event waits 20 ms on one of N workers.
        assert 0 < variant["share_of_ideal"] <= 1.05, (name, variant["share_of_ideal"])
        assert variant["ratio_to_baseline"] > 0, name
    assert variants["one-at-a-time"]["ratio_to_baseline"] == pytest.approx(1.0)
    assert variants["app-c100"]["events"] > variants["app-c10"]["events"]
    assert variants["app-c10"]["target_share_of_ideal"] == 0.9
    assert isinstance(variants["app-c10"]["meets_target"], bool)


def test_overhead_smoke_reports_latencies(kafka_bootstrap: str, database_url: str) -> None:
    """The framework-overhead benchmark runs end to end (--smoke) and its report is complete."""
    report = run_smoke("bench.overhead", kafka_bootstrap, database_url, timeout=180)

    mx, cfg = report["max_throughput"], report["config"]
    assert mx["rate"] > 0 and mx["succeeded"] == mx["events"] == 1_000
    assert cfg["rate"] == pytest.approx(mx["rate"] / 2)
    assert cfg["events"] >= 1 and cfg["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"raw-poll", "raw-batch", "app"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["produced"] == round_["done"] == cfg["events"], (name, round_)
        assert 0 < round_["measured"] <= cfg["events"], (name, round_)
        assert round_["produce_rate"] > 0, (name, round_)
        assert 0 < round_["p50_ms"] <= round_["p90_ms"] <= round_["p99_ms"] <= round_["max_ms"]
        for stat in ("p50_ms", "p99_ms"):
            expected = variant[f"median_{stat}"] - variants["raw-poll"][f"median_{stat}"]
            assert variant[f"added_{stat}"] == pytest.approx(expected), (name, stat)
    assert variants["raw-poll"]["added_p50_ms"] == 0
    # Only the app's outcome times come from polling the database.
    assert variants["app"]["rounds"][0]["db_poll_period_ms"] > 0
    assert variants["raw-poll"]["rounds"][0]["db_poll_period_ms"] is None


def test_memory_smoke_samples_every_variant(kafka_bootstrap: str, database_url: str) -> None:
    """The memory benchmark runs end to end (--smoke): child processes sampled, backlog drained."""
    report = run_smoke("bench.memory", kafka_bootstrap, database_url, timeout=240)

    events = report["config"]["events"]
    assert events == 20_000
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"app-idle", "raw", "app"}
    for name, variant in variants.items():
        assert variant["exit_code"] == 0, (name, variant["exit_code"])
        assert len(variant["rss_series_mb"]) >= 2, name
        # A Python process with confluent-kafka is tens of MB; a GB means a broken reading.
        assert 10 < variant["steady_rss_mb"] <= variant["peak_rss_mb"] < 1024, (name, variant)
        assert variant["vmhwm_mb"] >= 0.9 * variant["peak_rss_mb"], (name, variant)
    assert variants["raw"]["events_processed"] == events
    app = variants["app"]
    assert app["events_processed"] == events and app["drained_share"] == 1.0
    assert not app["stopped_by_max_seconds"]
    # The whole application (threads, pool, HTTP server) weighs more than a bare consume loop.
    assert app["peak_rss_mb"] > variants["raw"]["steady_rss_mb"]
    summary = report["summary"]
    assert summary["app_peak_mb"] >= app["peak_rss_mb"]
    assert summary["target_met"] == (summary["app_peak_mb"] < report["target_peak_mb"])


def test_retry_lateness_smoke_measures_every_retry(kafka_bootstrap: str, database_url: str) -> None:
    """The retry-lateness benchmark runs end to end (--smoke): every retry measured, per tier."""
    report = run_smoke("bench.retry_lateness", kafka_bootstrap, database_url, timeout=180)

    cfg = report["config"]
    events = cfg["events"]
    assert events == 300 and cfg["rounds"] == 1
    # Every event fails once, 10 % twice, 5 % three times (make_plan rounds the shares).
    expected = {
        "retry-1s": events,
        "retry-2s": round(events * cfg["twice_share"]) + round(events * cfg["thrice_share"]),
        "retry-4s": round(events * cfg["thrice_share"]),
    }
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"burst", "spread-2s"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["unmatched_retry_records"] == 0, name
        assert round_["retry_records"] == sum(expected.values()), name
        # No attempt ran twice: each retry record maps to exactly one handler call.
        assert round_["handler_calls"] == round_["expected_calls"], name
        for tier, count in expected.items():
            app, timer = variant["tiers"][tier], variant["baseline"][tier]
            assert app["count"] == count and timer["count"] == count, (name, tier)
            # A retry never runs before it is due (a small negative would be clock noise).
            assert app["median_ms"] >= -1 and app["p99_ms"] >= app["median_ms"], (name, tier)
            assert app["max_ms"] >= app["p99_ms"], (name, tier)
            assert app["target_met"] == (app["p99_ms"] < report["target_p99_ms"])
            assert timer["max_ms"] >= timer["median_ms"] >= 0, (name, tier)
            # Sanity bound: a retry that waits ten times its tier's delay is a broken schedule.
            assert app["max_ms"] < 10_000, (name, tier, app)
    assert report["machine"]["nproc"] >= 1 and report["machine"]["librdkafka"]


def test_cascade_smoke_times_both_variants(kafka_bootstrap: str, database_url: str) -> None:
    """The cascade benchmark runs end to end (--smoke): both variants reach 100 % and are timed."""
    report = run_smoke("bench.cascade", kafka_bootstrap, database_url, timeout=180)

    events = report["config"]["events"]
    assert events == 100 and report["config"]["rounds"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert set(variants) == {"cascade", "no-fault"}
    for name, variant in variants.items():
        (round_,) = variant["rounds"]
        assert round_["succeeded"] == events, (name, round_)
        # The scenario's own checks are reported, not judged here: at 100 events its fault
        # shapes can race (its tests cover them). A failed run must say which check failed.
        assert round_["passed"] == (not round_["failed_checks"]), (name, round_)
        assert 0 < round_["t50_s"] <= round_["t99_9_s"] <= round_["wall_s"] < 120, (name, round_)
        assert variant["median_wall_s"] == round_["wall_s"]
    cascade, baseline = variants["cascade"], variants["no-fault"]
    assert baseline["all_rounds_passed"], baseline["rounds"][0]["failed_checks"]
    assert baseline["ratio_to_no_fault"] == pytest.approx(1.0)
    # The faulted events wait for at least the 1 s retry tier, so the cascade takes longer.
    assert cascade["median_wall_s"] > 1.0
    assert cascade["rounds"][0]["succeeded_on_attempt"].get("1", 0) < events
    assert baseline["rounds"][0]["succeeded_on_attempt"] == {"1": events}
    assert cascade["target_met"] == (cascade["median_wall_s"] <= report["target"]["within_s"])


def test_dlq_index_smoke_answers_every_question_and_walks_every_page(
    kafka_bootstrap: str, database_url: str
) -> None:
    """The DLQ index benchmark runs end to end (--smoke): backfill, API answers, a full walk."""
    report = run_smoke("bench.dlq_index", kafka_bootstrap, database_url, timeout=240)
    records = report["config"]["records"]
    assert records == 5_000 and report["backfill"]["indexed"] == records
    api = report["api"]
    for name in ("summary", "first_page_100", "filtered_page_100", "record_view"):
        assert 0 < api[name]["median_s"] <= api[name]["max_s"], name
    walk = api["walk_500"]
    assert (walk["records"], walk["pages"]) == (records, 10)
    assert 0 < walk["tracemalloc_peak_mb"] < report["baseline_whole_topic"]["tracemalloc_peak_mb"]
    assert report["baseline_whole_topic"]["count"] == records
    assert report["summary"]["target_met"] == (report["summary"]["slowest_answer_s"] < 2.0)


def test_real_handlers_smoke_applies_every_event_once(
    kafka_bootstrap: str, database_url: str
) -> None:
    """The real-handler benchmark (issue 13) runs end to end (--smoke): `qchem-events run`
    with the real ChemicalStatus, Report and Email handlers applies every event once."""
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
