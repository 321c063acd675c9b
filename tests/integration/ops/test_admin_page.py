"""The /admin page in a real headless Chromium, against the real app, broker, database, SMTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from retry_topics.naming import topic_names
from tests.support.admin import TOKEN, admin_server, app_with_admin, call
from tests.support.app import running_app
from tests.support.browser import chromium, screenshot
from tests.support.db import rows, scalar
from tests.support.dead_letters import dead_lettered, produce_many
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def permanent_dead_letters(
    settings: Settings, event_type: str, count: int, error_class: str
) -> Settings:
    """`settings` for `event_type` alone, with `count` permanent dead letters of it."""
    settings = settings.model_copy(update={"event_types": (event_type,)})
    dead_lettered(settings, event_type, count, error_class=error_class, kind="permanent")
    return settings


def indexed(engine: Engine, count: int) -> None:
    wait_for(
        lambda: len(rows(engine, "SELECT 1 FROM dlq_entries")) >= count,
        timeout=60,
        message=f"{count} dead letters indexed",
    )


def cell(driver: webdriver.Chrome, css: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def sign_in(driver: webdriver.Chrome, name: str) -> None:
    """Type the token and a name once at the top: the page copies them into every form."""
    driver.find_element(By.ID, "token-box").send_keys(TOKEN)
    driver.find_element(By.ID, "actor-box").send_keys(name)


def test_the_page_shows_smtp_down_while_its_server_is_stopped(
    handler_settings: Settings, db_engine: Engine, smtp_sink: SmtpSink, browser: webdriver.Chrome
) -> None:
    settings = handler_settings.model_copy(update={"event_types": ("Email",)})
    with app_with_admin(settings) as (_app, admin):
        browser.get(f"{admin.url}/admin")
        smtp = '#dependencies tr[data-dependency="smtp"] td:nth-child(2)'
        assert cell(browser, smtp) == "ok"
        assert "smtp=closed" in cell(browser, "#instances")
        assert topic_names(settings, "Email").group in cell(browser, "#lag")
        smtp_sink.stop()
        browser.refresh()
        assert cell(browser, smtp) == "down"
        assert "down" in browser.find_element(By.CSS_SELECTOR, smtp).get_attribute("class")
        screenshot(browser, "admin-smtp-down")


def test_a_critical_dead_letter_approved_in_the_page_is_applied_exactly_once(
    handler_settings: Settings, db_engine: Engine, browser: webdriver.Chrome
) -> None:
    settings = permanent_dead_letters(handler_settings, "ChemicalStatus", 2, "ValidationError")
    with running_app(settings), admin_server(settings) as admin:
        indexed(db_engine, 2)
        browser.get(f"{admin.url}/admin")
        queue = browser.find_elements(By.CSS_SELECTOR, "#review-queue tr[data-ref]")
        assert len(queue) == 2
        ref = queue[0].get_attribute("data-ref")
        sign_in(browser, "carol")
        screenshot(browser, "admin-review-queue")
        queue[0].find_element(By.NAME, "reason").send_keys("CAS number corrected upstream")
        queue[0].find_element(By.CSS_SELECTOR, "button.approve").click()
        wait_for(lambda: "/admin/records/" in browser.current_url, timeout=30, message="record")
        assert cell(browser, "#status") == "replayed"
        assert "page:carol" in cell(browser, "#review")
        actions = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history .action")]
        assert actions == ["replayed", "approve"]
        assert browser.find_elements(By.CSS_SELECTOR, "button.approve") == []  # no second go
        screenshot(browser, "admin-approved")
        event_id = call(admin.url, "GET", f"/api/v1/dlq/records/{ref}").body["event_id"]
        applied = "SELECT count(*) FROM chemical_status_history WHERE event_id = :e"
        wait_for(
            lambda: scalar(db_engine, applied, e=event_id) == 1,
            timeout=60,
            message="the approved status applied",
        )
        again = call(admin.url, "POST", f"/api/v1/dlq/records/{ref}/approve", {}, token=TOKEN)
        assert again.status == 409
        browser.get(f"{admin.url}/admin")  # the queue holds only the other record now
        left = browser.find_elements(By.CSS_SELECTOR, "#review-queue tr[data-ref]")
        assert [r.get_attribute("data-ref") for r in left] != [ref] and len(left) == 1
    assert scalar(db_engine, applied, e=event_id) == 1
    assert scalar(db_engine, "SELECT count(*) FROM dedup_keys WHERE event_id = :e", e=event_id) == 1
    assert scalar(db_engine, "SELECT count(*) FROM dlq_replayed_records") == 1


def test_a_rejection_in_the_page_stays_rejected_and_audited(
    settings: Settings, db_engine: Engine, browser: webdriver.Chrome
) -> None:
    settings = permanent_dead_letters(settings, "ChemicalLookup", 1, "NotFound")
    with admin_server(settings) as admin:
        indexed(db_engine, 1)
        (ref,) = [r["ref"] for r in call(admin.url, "GET", "/api/v1/dlq/records").body["records"]]
        browser.get(f"{admin.url}/admin/records/{ref}")
        sign_in(browser, "dave")
        forms = browser.find_elements(By.CSS_SELECTOR, "form[action$='/reject']")
        forms[0].find_element(By.NAME, "reason").send_keys("a test chemical, never real")
        forms[0].find_element(By.CSS_SELECTOR, "button.reject").click()
        wait_for(lambda: "done=rejected" in browser.current_url, timeout=30, message="rejected")
        screenshot(browser, "admin-rejected")
    with admin_server(settings) as again:  # a new process: the state is in PostgreSQL
        browser.get(f"{again.url}/admin/records/{ref}")
        assert cell(browser, "#status") == "rejected"
        assert "page:dave" in cell(browser, "#review")
        assert "never real" in cell(browser, "#review")
        assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#history .action")] == [
            "reject"
        ]
        bulk = call(
            again.url, "POST", "/api/v1/dlq/replay", {"type": "ChemicalLookup"}, token=TOKEN
        )
        assert bulk.body["records"] == [] and bulk.body["skipped_needs_review"] == 1
    audit = rows(
        db_engine, "SELECT actor, action, ref, detail FROM dlq_audit WHERE ref = :r", r=ref
    )
    assert [(a.actor, a.action, a.detail["reason"]) for a in audit] == [
        ("page:dave", "reject", "a test chemical, never real")
    ]
    assert scalar(db_engine, "SELECT count(*) FROM dlq_replayed_records") == 0


def test_the_page_without_a_token_cannot_mutate(
    settings: Settings, db_engine: Engine, browser: webdriver.Chrome
) -> None:
    settings = permanent_dead_letters(settings, "ChemicalStatus", 1, "ValidationError")
    with admin_server(settings, token=None) as readonly:
        indexed(db_engine, 1)
        browser.get(f"{readonly.url}/admin")
        banner = cell(browser, "#mutations-disabled")
        assert "ADMIN_TOKEN" in banner and "restart" in banner
        button = browser.find_element(By.CSS_SELECTOR, "#review-queue button.approve")
        assert button.get_attribute("disabled") is not None
        screenshot(browser, "admin-read-only")
        browser.execute_script("document.querySelector('#review-queue form').submit()")
        wait_for(lambda: browser.find_elements(By.ID, "error"), timeout=30, message="refusal")
        assert "403" in cell(browser, "h2") and "ADMIN_TOKEN" in cell(browser, "#error")
    with admin_server(settings) as admin:
        browser.get(f"{admin.url}/admin")  # a token is configured, but nobody typed it
        browser.find_element(By.CSS_SELECTOR, "#review-queue button.approve").click()
        wait_for(lambda: browser.find_elements(By.ID, "error"), timeout=30, message="refusal")
        assert "401" in cell(browser, "h2")
        screenshot(browser, "admin-no-token")
        (record,) = call(admin.url, "GET", "/api/v1/dlq/records").body["records"]
        assert record["status"] == "pending"
    assert scalar(db_engine, "SELECT count(*) FROM dlq_audit") == 0
    assert scalar(db_engine, "SELECT count(*) FROM dlq_replays") == 0


def test_replay_from_the_page_previews_then_shows_the_job_finish(
    settings: Settings, db_engine: Engine, browser: webdriver.Chrome
) -> None:
    settings = settings.model_copy(update={"event_types": ("Report",)})
    produce_many(settings, "Report", 30, ["TimeoutError", "PermanentError"])
    with admin_server(settings) as admin:
        indexed(db_engine, 30)
        browser.get(f"{admin.url}/admin")
        form = browser.find_element(By.ID, "replay-form")
        form.find_element(By.NAME, "error_class").send_keys("TimeoutError")
        form.find_element(By.CSS_SELECTOR, "button").click()
        wait_for(
            lambda: browser.find_elements(By.ID, "preview-count"), timeout=30, message="preview"
        )
        assert cell(browser, "#preview-count").startswith("would replay 15;")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#preview li")) == 15
        assert scalar(db_engine, "SELECT count(*) FROM dlq_replays") == 0  # a preview only
        screenshot(browser, "admin-replay-preview")
        sign_in(browser, "erin")
        browser.find_element(By.CSS_SELECTOR, "#replay-start button").click()
        wait_for(lambda: "/admin/jobs/" in browser.current_url, timeout=30, message="job page")

        def done() -> bool:
            browser.refresh()
            return cell(browser, "#job-status") == "finished"

        wait_for(done, timeout=60, interval=0.5, message="the job to finish")
        assert cell(browser, "#job-progress") == "15/15 sent, 0 failed"
        screenshot(browser, "admin-replay-job")
    assert scalar(db_engine, "SELECT who FROM dlq_replays") == "page:erin"
