"""`qchem-events stats`: what the event records say, by event type (runbook: success rate).

Scoped to the consumer groups of one topic prefix (`<prefix>-events.<type>`, every known type)
by default: a database shared by several deployments or test runs was counted as one.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine

from common import event_types
from retry_topics.naming import TopicNames

FINAL = ("succeeded", "dlq", "invalid")


def groups_of(prefix: str) -> list[str]:
    """The consumer groups of a prefix's listeners, every known type - exact names, not a
    LIKE pattern, in which a prefix's '_' would be a wildcard."""
    return [TopicNames(prefix, event_type).group for event_type in event_types.names()]


def event_stats(engine: Engine, prefix: str | None) -> dict[str, Any]:
    """Counts by type and status for one prefix's consumer groups, or all when `prefix` is
    None."""
    where = "consumer_group IN :groups" if prefix is not None else "TRUE"
    params = {"groups": groups_of(prefix)} if prefix is not None else {}

    def query(conn: Connection, sql: str) -> Any:
        statement = text(sql.format(where=where))
        if prefix is not None:
            statement = statement.bindparams(bindparam("groups", expanding=True))
        return conn.execute(statement, params).all()

    with engine.connect() as conn:
        by_status = query(
            conn,
            "SELECT event_type, status, count(*) FROM event_records WHERE {where} "
            "GROUP BY event_type, status ORDER BY event_type, status",
        )
        attempts = query(
            conn,
            "SELECT event_type, attempts, count(*) FROM event_records "
            "WHERE status = 'succeeded' AND {where} GROUP BY event_type, attempts ORDER BY 1, 2",
        )
        timing = query(
            conn,
            "SELECT event_type, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY processing_ms), "
            "percentile_cont(0.9) WITHIN GROUP (ORDER BY processing_ms), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY processing_ms), "
            "max(processing_ms) FROM event_records WHERE status = 'succeeded' AND {where} "
            "GROUP BY event_type",
        )
    types: dict[str, dict[str, Any]] = {}
    for event_type, status, count in by_status:
        entry = types.setdefault(event_type, {"counts": {}, "attempts": {}, "processing_ms": {}})
        entry["counts"][status] = count
    for event_type, attempt, count in attempts:
        types[event_type]["attempts"][str(attempt)] = count
    for event_type, p50, p90, p99, max_ms in timing:
        types[event_type]["processing_ms"] = {
            "p50": _num(p50),
            "p90": _num(p90),
            "p99": _num(p99),
            "max": _num(max_ms),
        }
    for entry in types.values():
        final = sum(entry["counts"].get(s, 0) for s in FINAL)
        succeeded = entry["counts"].get("succeeded", 0)
        entry["success_rate"] = round(succeeded / final, 4) if final else None
    return {"scope": {"prefix": prefix}, "event_types": types}


def _num(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def render(stats: dict[str, Any]) -> str:
    lines = [f"{'event type':<16} {'success':>8}  counts / attempts of successes"]
    for event_type, entry in sorted(stats["event_types"].items()):
        rate = entry["success_rate"]
        rate_text = "-" if rate is None else f"{rate * 100:.1f}%"
        counts = " ".join(f"{k}={v}" for k, v in sorted(entry["counts"].items()))
        attempts = " ".join(f"#{k}={v}" for k, v in sorted(entry["attempts"].items()))
        lines.append(f"{event_type:<16} {rate_text:>8}  {counts}  [{attempts}]")
    if len(lines) == 1:
        lines.append("(no events recorded yet)")
    prefix = stats.get("scope", {}).get("prefix")
    lines.append(
        f"(consumer groups {prefix}-events.*; --all-groups counts every prefix)"
        if prefix is not None
        else "(every consumer group in the database)"
    )
    return "\n".join(lines)
