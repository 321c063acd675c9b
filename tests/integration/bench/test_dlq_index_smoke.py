"""The DLQ index benchmark runs end to end (--smoke): backfill, API answers, a full walk."""

from __future__ import annotations

import pytest

from tests.support.bench import run_smoke

pytestmark = pytest.mark.integration


def test_dlq_index_smoke_answers_every_question_and_walks_every_page(
    kafka_bootstrap: str, database_url: str
) -> None:
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
