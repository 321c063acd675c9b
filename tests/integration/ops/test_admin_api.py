"""The admin API (`qchem-events admin`) against the real app, broker, database and SMTP."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from ops.admin.config import AdminConfigError, load_admin_settings
from retry_topics.naming import topic_names
from tests.support.admin import TOKEN, admin_server, app_with_admin, call, one_line_error
from tests.support.app import free_port, running_app
from tests.support.db import scalar
from tests.support.dead_letters import dead_lettered, produce_many
from tests.support.kafka import end_offsets, wait_for

pytestmark = pytest.mark.integration


def indexed(engine: Engine, count: int, event_type: str | None = None) -> None:
    where = "" if event_type is None else f" WHERE event_type = '{event_type}'"
    wait_for(
        lambda: scalar(engine, f"SELECT count(*) FROM dlq_entries{where}") >= count,
        timeout=60,
        message=f"{count} dead letters indexed",
    )


def finished(base: str, job: str) -> dict[str, Any]:
    def done() -> Any:
        got = call(base, "GET", f"/api/v1/dlq/replays/{job}")
        return got.body if got.body["status"] != "running" else None

    return dict(wait_for(done, timeout=90, interval=0.3, message=f"job {job} to finish"))


def test_health_shows_dependencies_breakers_lag_and_an_smtp_outage(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email", "ChemicalStatus")})
    with app_with_admin(settings) as (app, admin):
        got = call(admin.url, "GET", "/api/v1/health")
        assert got.status == 200, got.body
        deps = got.body["dependencies"]
        assert {k: v["status"] for k, v in deps.items()} == {
            "kafka": "ok",
            "postgresql": "ok",
            "smtp": "ok",
            "chemical_api": "ok",
        }
        (instance,) = got.body["instances"]
        assert instance["status"] == "ok" and instance["breakers"]["smtp"] == "closed"
        groups = {topic_names(settings, t).group for t in settings.event_types}
        assert set(got.body["lag"]["groups"]) == groups
        partitions = {(r["topic"], r["partition"]) for r in got.body["lag"]["partitions"]}
        assert (topic_names(settings, "Email").main, 2) in partitions  # 3 partitions per topic
        smtp_sink.stop()
        down = call(admin.url, "GET", "/api/v1/health").body
        assert down["dependencies"]["smtp"]["status"] == "down" and down["healthy"] is False
        # Several instances: each is read on its own, and one that does not answer shows.
        gone = f"http://127.0.0.1:{free_port()}"
        both = f"http://127.0.0.1:{app.health.port},{gone}"  # type: ignore[union-attr]
        with admin_server(settings, instances=both) as two:
            seen = call(two.url, "GET", "/api/v1/health").body["instances"]
        assert [(i["url"], i["status"]) for i in seen] == [
            (both.split(",")[0], "ok"),
            (gone, "unreachable"),
        ]


def test_every_mutation_needs_the_token_and_bad_input_is_a_one_line_400(
    settings: Settings, db_engine: Engine
) -> None:
    dead_lettered(settings, "Email", 3)
    with admin_server(settings, token=None) as readonly:
        assert call(readonly.url, "GET", "/api/v1/dlq/summary").status == 200  # reads: loopback
        for path, body in [
            ("/api/v1/dlq/replay", {"type": "Email", "dry_run": True}),
            ("/api/v1/dlq/records/ChemicalStatus:0:0/approve", {}),
            ("/api/v1/dlq/records/ChemicalStatus:0:0/reject", {"reason": "x"}),
            ("/api/v1/dlq/purge", {"type": "Email", "dry_run": True}),
            ("/api/v1/dlq/sync", {}),
        ]:
            error = one_line_error(call(readonly.url, "POST", path, body, token=TOKEN), 403)
            assert "ADMIN_TOKEN" in error
    with admin_server(settings) as admin:
        base = admin.url
        indexed(db_engine, 3)
        missing = call(base, "POST", "/api/v1/dlq/replay", {"type": "Email", "dry_run": True})
        assert one_line_error(missing, 401) and missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = call(base, "POST", "/api/v1/dlq/replay", {"type": "Email"}, token="x" * 30)
        one_line_error(wrong, 401)
        assert scalar(db_engine, "SELECT count(*) FROM dlq_replays") == 0  # nothing ran
        bad: list[tuple[str, str, Any, bytes | None]] = [
            ("GET", "/api/v1/dlq/records?colour=red", None, None),
            ("GET", "/api/v1/dlq/records?cursor=not-a-cursor", None, None),
            ("GET", "/api/v1/dlq/records?limit=0", None, None),
            ("GET", "/api/v1/dlq/records?status=lost", None, None),
            ("GET", "/api/v1/dlq/records?since=yesterday", None, None),
            ("GET", "/api/v1/dlq/records?type=Nope", None, None),
            ("GET", "/api/v1/dlq/records/Email:zero:1", None, None),
            ("GET", "/api/v1/dlq/summary?tpye=Email", None, None),
            ("GET", "/api/v1/dlq/replays/not-a-uuid", None, None),
            ("POST", "/api/v1/dlq/replay", None, b"{not json"),
            ("POST", "/api/v1/dlq/replay", None, b"[1, 2]"),
            ("POST", "/api/v1/dlq/replay", {"type": "Email", "rate": "fast"}, None),
            ("POST", "/api/v1/dlq/replay", {"type": "Email", "dry_run": "yes"}, None),
            ("POST", "/api/v1/dlq/replay", {"type": "Email", "colour": 1}, None),
            ("POST", "/api/v1/dlq/replay", {"type": "Email", "target": "elsewhere"}, None),
            ("POST", "/api/v1/dlq/replay", {"dry_run": True}, None),
            (
                "POST",
                "/api/v1/dlq/replay",
                None,
                b'{"type": "Email", "x": "' + b"a" * 70_000 + b'"}',
            ),
            ("POST", "/api/v1/dlq/records/Email:0:0/approve", {}, None),
            ("POST", "/api/v1/dlq/purge", {"type": "Email", "older_than_days": -1}, None),
        ]
        for method, path, body, data in bad:
            got = call(base, method, path, body, token=TOKEN, data=data)
            one_line_error(got, 400)
        one_line_error(call(base, "GET", "/api/v1/nothing-here"), 404)
        one_line_error(call(base, "DELETE", "/api/v1/dlq/summary"), 405)
        one_line_error(call(base, "GET", "/api/v1/dlq/records/Email:0:999999"), 404)
        rebinding = call(base, "GET", "/api/v1/dlq/summary", headers={"Host": "evil.example:80"})
        one_line_error(rebinding, 400)
        assert scalar(db_engine, "SELECT count(*) FROM dlq_audit") == 0


def test_reads_need_the_token_beyond_loopback(settings: Settings, db_engine: Engine) -> None:
    with pytest.raises(AdminConfigError, match=r"ADMIN_HOST=0\.0\.0\.0 is beyond loopback"):
        load_admin_settings(host="0.0.0.0", token=None)
    with admin_server(settings, host="0.0.0.0") as admin:
        base = f"http://127.0.0.1:{admin.port}"
        one_line_error(call(base, "GET", "/api/v1/dlq/summary"), 401)
        assert call(base, "GET", "/api/v1/dlq/summary", token=TOKEN).status == 200


def test_summary_and_pages_over_thousands_of_dead_letters(
    settings: Settings, db_engine: Engine
) -> None:
    classes = ["DependencyDownError", "TimeoutError", "PermanentError"]
    produce_many(settings, "Report", 3_000, classes)
    with admin_server(settings) as admin:
        base = admin.url
        indexed(db_engine, 3_000)
        summary = call(base, "GET", "/api/v1/dlq/summary?type=Report").body
        (row,) = summary["event_types"]
        assert row["count"] == 3_000 and summary["total"] == 3_000
        assert {g["error_class"]: g["count"] for g in row["by_error"]} == dict.fromkeys(
            classes, 1_000
        )
        seen: list[str] = []
        cursor = None
        while True:
            query = "/api/v1/dlq/records?type=Report&limit=500" + (
                f"&cursor={cursor}" if cursor else ""
            )
            page = call(base, "GET", query).body
            assert len(page["records"]) <= 500
            seen += [r["id"] for r in page["records"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 3_000
        timed = [
            (r["dead_lettered_at"], r["partition"], r["offset"])
            for r in call(base, "GET", "/api/v1/dlq/records?type=Report&limit=500").body["records"]
        ]
        assert timed == sorted(timed)
        only = call(
            base, "GET", "/api/v1/dlq/records?type=report&error_class=timeouterror&limit=500"
        )
        assert len(only.body["records"]) == 500 and only.body["next_cursor"]
        assert {r["error_class"] for r in only.body["records"]} == {"TimeoutError"}
        future = call(base, "GET", "/api/v1/dlq/records?since=2999-01-01").body
        assert future == {"records": [], "next_cursor": None}
        ref = seen[0]
        record = call(base, "GET", f"/api/v1/dlq/records/{ref}").body
        assert record["id"] == ref and record["status"] == "new"
        assert json.loads(record["payload"])["event_id"] == record["event_id"]
        assert "hunter2" not in json.dumps(record)  # the logging rules redact it


def test_replay_job_sends_each_email_once_with_progress_history_and_a_replay_cap(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    dead_lettered(settings, "Email", 40)
    with running_app(settings), admin_server(settings) as admin:
        base = admin.url
        indexed(db_engine, 40)
        alice = {"X-Admin-Actor": "alice"}
        dry = call(base, "POST", "/api/v1/dlq/replay", {"type": "Email", "dry_run": True},
                   token=TOKEN, headers=alice)  # fmt: skip
        assert dry.status == 200 and dry.body["would_replay"] == 40
        started = call(base, "POST", "/api/v1/dlq/replay", {"type": "Email", "rate": "500/s"},
                       token=TOKEN, headers=alice)  # fmt: skip
        assert started.status == 202 and started.body["status"] == "running"
        job = finished(base, started.body["job"])
        assert (job["status"], job["replayed"], job["total"], job["failed"]) == (
            "finished",
            40,
            40,
            0,
        )
        assert job["who"] == "api:alice" and job["filter"]["type"] == "Email"
        wait_for(lambda: len(smtp_sink.count_by_event_id()) == 40, timeout=60, message="40 mails")
        listed = call(base, "GET", "/api/v1/dlq/replays").body["replays"]
        assert [j["job"] for j in listed][:2] == [started.body["job"], dry.body["job"]]
        capped = {"type": "Email", "include_replayed": True, "max_replays": 1}
        again = call(base, "POST", "/api/v1/dlq/replay", capped, token=TOKEN)
        assert again.body["skipped_replay_cap"] == 40 and again.body["records"] == []
        finished(base, again.body["job"])
        time.sleep(2)  # anything sent by mistake would be consumed meanwhile
        assert max(smtp_sink.count_by_event_id().values()) == 1
        audit = call(base, "GET", "/api/v1/dlq/audit").body["audit"]
        assert [a["action"] for a in audit] == ["replay", "replay", "replay-dry-run"]
        assert {a["actor"] for a in audit} == {"api:alice", "api"}


def test_review_approves_once_rejects_for_good_and_purge_is_audited(
    handler_settings: Settings, db_engine: Engine
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("ChemicalStatus", "Email")})
    dead_lettered(settings, "ChemicalStatus", 3, error_class="ValidationError", kind="permanent")
    with running_app(settings), admin_server(settings) as admin:
        base = admin.url
        indexed(db_engine, 3)
        queue = call(base, "GET", "/api/v1/dlq/records?type=ChemicalStatus&status=pending").body
        first, second, third = (r["id"] for r in queue["records"])
        bulk = call(base, "POST", "/api/v1/dlq/replay", {"type": "ChemicalStatus"}, token=TOKEN)
        assert bulk.body["skipped_needs_review"] == 3 and bulk.body["records"] == []
        bob = {"X-Admin-Actor": "bob"}
        ok = call(base, "POST", f"/api/v1/dlq/records/{first}/approve", {"reason": "CAS fixed"},
                  token=TOKEN, headers=bob)  # fmt: skip
        assert ok.status == 200 and ok.body["state"] == "replayed", ok.body
        event_id = call(base, "GET", f"/api/v1/dlq/records/{first}").body["event_id"]
        wait_for(
            lambda: (
                scalar(
                    db_engine,
                    "SELECT count(*) FROM chemical_status_history WHERE event_id = :e",
                    e=event_id,
                )
                == 1
            ),
            timeout=60,
            message="the approved status applied",
        )
        twice = call(base, "POST", f"/api/v1/dlq/records/{first}/approve", {}, token=TOKEN)
        assert "already replayed" in one_line_error(twice, 409)
        one_line_error(
            call(base, "POST", f"/api/v1/dlq/records/{second}/reject", {}, token=TOKEN), 400
        )
        no = call(base, "POST", f"/api/v1/dlq/records/{second}/reject", {"reason": "superseded"},
                  token=TOKEN, headers=bob)  # fmt: skip
        assert no.status == 200 and no.body["state"] == "rejected"
        after = call(base, "POST", f"/api/v1/dlq/records/{second}/approve", {}, token=TOKEN)
        assert "already rejected (by api:bob" in one_line_error(after, 409)
        rejected = call(base, "GET", f"/api/v1/dlq/records/{second}").body
        assert rejected["status"] == "rejected" and rejected["review"]["reason"] == "superseded"
        # The error text quoted a password: redacted in the record and in lists.
        assert "hunter2" not in json.dumps(rejected) and "hunter2" not in json.dumps(queue)
        assert "password=***" in rejected["error_message"]
        assert [h["action"] for h in rejected["history"]] == ["reject"]
        time.sleep(1)
        assert scalar(db_engine, "SELECT count(*) FROM chemical_status_history") == 1
        summary = call(base, "GET", "/api/v1/dlq/summary?type=ChemicalStatus").body
        assert summary["event_types"][0]["review"] == {
            "pending": 1, "approved": 0, "rejected": 1, "replayed": 1
        }  # fmt: skip
        third_id = call(base, "GET", f"/api/v1/dlq/records/{third}").body["event_id"]
        hide = {"type": "ChemicalStatus", "event_id": [third_id]}
        purge = call(base, "POST", "/api/v1/dlq/purge", hide, token=TOKEN, headers=bob)
        assert purge.status == 200 and (purge.body["mode"], purge.body["count"]) == ("hide", 1)
        hidden = call(base, "GET", "/api/v1/dlq/records?type=ChemicalStatus&status=hidden").body
        assert [r["id"] for r in hidden["records"]] == [third]
        actions = [
            (a["actor"], a["action"]) for a in call(base, "GET", "/api/v1/dlq/audit").body["audit"]
        ]
        assert actions[:4] == [
            ("api:bob", "purge-hide"), ("api:bob", "reject"),
            ("api:bob", "replayed"), ("api:bob", "approve"),
        ]  # fmt: skip
        assert call(base, "POST", "/api/v1/dlq/sync", {}, token=TOKEN).body == {"indexed": 0}


def test_a_replay_to_the_retry_tier_is_processed_without_touching_the_main_topic(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    names, originals = dead_lettered(settings, "Report", 5)
    main_before = end_offsets(settings, names.main)
    with running_app(settings), admin_server(settings) as admin:
        indexed(db_engine, 5)
        body = {"type": "Report", "target": "retry"}
        started = call(admin.url, "POST", "/api/v1/dlq/replay", body, token=TOKEN)
        assert started.status == 202 and started.body["target_topic"] == names.retry(1000)
        assert finished(admin.url, started.body["job"])["replayed"] == 5
        wait_for(
            lambda: (
                scalar(db_engine, "SELECT count(*) FROM event_records WHERE status = 'succeeded'")
                == 5
            ),
            timeout=60,
            message="5 reports written from the retry tier",
        )
    assert end_offsets(settings, names.main) == main_before  # other groups saw nothing
    origins = {(m.partition(), m.offset()) for m in originals}
    with db_engine.connect() as conn:
        done = conn.execute(
            text(
                "SELECT origin_topic, origin_partition, origin_offset, attempts FROM event_records"
            )
        ).all()
    assert {(r.origin_partition, r.origin_offset) for r in done} == origins
    assert {(r.origin_topic, r.attempts) for r in done} == {(names.main, 2)}


def test_two_approvals_at_once_replay_the_record_once(
    settings: Settings, db_engine: Engine
) -> None:
    settings = settings.model_copy(update={"event_types": ("ChemicalStatus",)})
    names, _ = dead_lettered(settings, "ChemicalStatus", 1, kind="permanent")
    main_before = sum(end_offsets(settings, names.main).values())
    with admin_server(settings) as admin:
        indexed(db_engine, 1)
        (ref,) = [r["id"] for r in call(admin.url, "GET", "/api/v1/dlq/records").body["records"]]
        path = f"/api/v1/dlq/records/{ref}/approve"
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(
                pool.map(lambda _: call(admin.url, "POST", path, {}, token=TOKEN), range(4))
            )
    assert sorted(a.status for a in answers) == [200, 409, 409, 409]
    assert sum(end_offsets(settings, names.main).values()) == main_before + 1  # one copy sent
    assert scalar(db_engine, "SELECT count(*) FROM dlq_audit WHERE action = 'approve'") == 1
