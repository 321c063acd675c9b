"""`qchem-events health`: the runbook's "verify system health" step in one command.

Checks, each with a status of ok / down / unknown:
  kafka        the broker answers metadata requests
  postgresql   a query answers
  smtp         a TCP connection to SMTP_HOST:SMTP_PORT gets a 220 greeting
  chemical_api GET {CHEMICAL_API_URL}/health answers 2xx
  breakers     each breaker's state, read from the running application's /metrics
  lag          per consumer group: records between committed offsets and the end

Also the running application's probes, served by ops/http.py: `liveness` (/healthz) and
`readiness` (/readyz).
"""

from __future__ import annotations

import smtplib
import time
import urllib.request
from typing import TYPE_CHECKING, Any

from confluent_kafka import Consumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from common.settings import Settings, redact_url
from common.urls import scrub
from ops.topics import KafkaUnavailable, admin_client, existing_topics
from retry_topics.naming import topic_names
from storage.db import describe_error, make_engine

if TYPE_CHECKING:
    from consumers.runtime import Runtime

BREAKER_STATES = {0: "closed", 1: "half-open", 2: "open"}


def check_kafka(settings: Settings) -> dict[str, Any]:
    try:
        topics = existing_topics(admin_client(settings), settings, timeout=5)
        return {
            "status": "ok",
            "bootstrap": settings.kafka_bootstrap_servers,
            "topics": len(topics),
        }
    except KafkaUnavailable as exc:
        return {"status": "down", "error": str(exc)}


def check_postgresql(settings: Settings) -> dict[str, Any]:
    engine = make_engine(settings, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok", "url": redact_url(settings.sqlalchemy_url)}
    except Exception as exc:
        # describe_error: the driver's text without any part of the password.
        reason = describe_error(exc, settings)
        return {"status": "down", "url": redact_url(settings.sqlalchemy_url), "error": reason}
    finally:
        engine.dispose()


def check_smtp(settings: Settings) -> dict[str, Any]:
    target = f"{settings.smtp_host}:{settings.smtp_port}"
    try:
        with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=3) as smtp:
            code, _ = smtp.noop()
        return {"status": "ok" if code == 250 else "down", "server": target}
    except (OSError, smtplib.SMTPException) as exc:
        return {"status": "down", "server": target, "error": str(exc)[:200]}


def check_chemical_api(settings: Settings) -> dict[str, Any]:
    url = f"{settings.chemical_api_url}/health"
    shown = redact_url(url)  # the API URL may carry credentials too
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return {"status": "ok" if 200 <= response.status < 300 else "down", "url": shown}
    except OSError as exc:
        return {"status": "down", "url": shown, "error": scrub(str(exc))}


def breaker_states(settings: Settings) -> dict[str, Any]:
    """Read the breakers of the running application from its /metrics endpoint."""
    url = f"http://{settings.metrics_host}:{settings.metrics_port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            body = response.read().decode()
    except OSError as exc:
        return {"status": "unknown", "error": f"application not reachable at {url} ({exc})"}
    states = {}
    for family in text_string_to_metric_families(body):
        if family.name == "qchem_dependency_breaker_state":
            for sample in family.samples:
                states[sample.labels["dependency"]] = BREAKER_STATES.get(int(sample.value), "?")
    worst = "down" if "open" in states.values() else "ok"
    return {"status": worst, "source": url, "breakers": states}


def group_lag(settings: Settings) -> list[dict[str, Any]]:
    """Per group, topic and partition: end offset minus the group's committed offset."""
    rows: list[dict[str, Any]] = []
    for event_type in settings.event_types:
        names = topic_names(settings, event_type)
        consumer = Consumer({**settings.kafka_common_config(), "group.id": names.group})
        try:
            for topic in names.consumed():
                metadata = consumer.list_topics(topic, timeout=5)
                if topic not in metadata.topics or metadata.topics[topic].error is not None:
                    continue
                tps = [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
                for tp in consumer.committed(tps, timeout=5):
                    low, high = consumer.get_watermark_offsets(tp, timeout=5)
                    position = tp.offset if tp.offset >= 0 else low
                    rows.append(
                        {
                            "group": names.group,
                            "event_type": event_type,
                            "topic": topic,
                            "partition": tp.partition,
                            "lag": max(0, high - position),
                        }
                    )
        finally:
            consumer.close()
    return rows


def consumer_lag(settings: Settings) -> dict[str, Any]:
    """Per group: the sum of `group_lag` over its topics and partitions."""
    groups: dict[str, Any] = {}
    for event_type in settings.event_types:
        groups[topic_names(settings, event_type).group] = {"event_type": event_type, "lag": 0}
    for row in group_lag(settings):
        groups[row["group"]]["lag"] += row["lag"]
    return {"status": "ok", "groups": groups}


def health(settings: Settings) -> dict[str, Any]:
    report: dict[str, Any] = {
        "kafka": check_kafka(settings),
        "postgresql": check_postgresql(settings),
        "smtp": check_smtp(settings),
        "chemical_api": check_chemical_api(settings),
        "breakers": breaker_states(settings),
    }
    if report["kafka"]["status"] == "ok":
        report["lag"] = consumer_lag(settings)
    report["healthy"] = all(
        part["status"] in ("ok", "unknown") for part in report.values() if isinstance(part, dict)
    )
    return report


def render(report: dict[str, Any]) -> str:
    lines = []
    for name in ("kafka", "postgresql", "smtp", "chemical_api", "breakers"):
        part = report[name]
        detail = (
            part.get("error")
            or part.get("bootstrap")
            or part.get("url")
            or part.get("server")
            or ""
        )
        if name == "breakers" and "breakers" in part:
            detail = ", ".join(f"{k}={v}" for k, v in sorted(part["breakers"].items())) or "none"
        lines.append(f"{name:<13} {part['status']:<8} {detail}")
    for group, entry in sorted(report.get("lag", {}).get("groups", {}).items()):
        lines.append(f"{'lag':<13} {entry['lag']:<8} {group}")
    lines.append("healthy" if report["healthy"] else "PROBLEM FOUND")
    return "\n".join(lines)


# -- the running application's own probes (/healthz, /readyz in ops/http.py) ----------------


def liveness(app: Runtime, now: float | None = None) -> dict[str, Any]:
    """/healthz: no listener crashed and every poll loop turned within LIVENESS_LOOP_TTL_S.

    A thread that died is one way to stop consuming; a loop that no longer turns (a call that
    never returns, a rebalance callback stuck waiting) is the other, and only the loop's age
    shows it. A stopping listener is exempt: its loop has ended on purpose while it drains.
    The body is `{"alive": true}` when alive, with the reasons when not."""
    now = time.monotonic() if now is None else now
    ttl = app.settings.liveness_loop_ttl_s
    stalled = {
        listener.event_type: round(now - listener.last_turn, 1)
        for listener in app.listeners
        if not listener.stopping.is_set() and now - listener.last_turn > ttl
    }
    crashed = app.failed.is_set()
    if not crashed and not stalled:
        return {"alive": True}
    return {"alive": False, "listener_crashed": crashed, "stalled_loops_s": stalled, "ttl_s": ttl}


def readiness(app: Runtime, *, database: bool) -> dict[str, Any]:
    """/readyz: alive, every listener has joined its consumer group, the database answers.

    Joined, not "holds partitions": with more instances than partitions (a rollout's surge,
    KEDA scaling up to the partition count) some instances rightly hold none, and a readiness
    that waited for partitions would stall the rollout behind them."""
    alive = bool(liveness(app)["alive"])
    joined = app.ready()
    partitions = sum(len(listener.book.owned()) for listener in app.listeners)
    return {
        "ready": alive and joined and database,
        "alive": alive,
        "listeners_joined": joined,
        "database": database,
        "partitions": partitions,
    }
