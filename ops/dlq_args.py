"""Arguments of the DLQ runbook, checked once for the CLI and the admin API.

Text arrives from CLI options, query strings and JSON bodies; a bad value is a DlqUsageError
(exit 2 in the CLI, a one-line 400 in the API). ops/dlq_service.py re-exports these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from common.settings import Settings
from ops import dlq_jobs, dlq_query
from ops.dlq import (
    MAX_AGE_DAYS,
    DlqUsageError,
    Filters,
    dlq_topic,
    parse_time,
    partition_count,
    resolve_type,
)
from ops.dlq_replay import parse_rate

PAGE_DEFAULT = 100
QUERY_KEYS = {
    "type",
    "error_class",
    "since",
    "until",
    "status",
    "partition",
    "event_id",
    "cursor",
    "limit",
}


# -- arguments ---------------------------------------------------------------------------------


def make_filters(
    error_class: str | None = None,
    since: str | None = None,
    until: str | None = None,
    partition: int | None = None,
    event_ids: Sequence[str] | None = None,
    limit: int | None = None,
) -> Filters:
    since_ms = parse_time(since, "--since") if since is not None else None
    until_ms = parse_time(until, "--until") if until is not None else None
    if since_ms is not None and until_ms is not None and since_ms >= until_ms:
        raise DlqUsageError(f"--since {since} is not before --until {until}: nothing can match")
    return Filters(
        error_class=error_class,
        since_ms=since_ms,
        until_ms=until_ms,
        partition=partition,
        event_ids=frozenset(event_ids or ()),
        limit=limit,
    )


def _int(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise DlqUsageError(f"{name}: expected a whole number from {low} to {high}, got {text!r}")
    return int(text)


def types_of(settings: Settings, name: str | None) -> tuple[str, ...]:
    if name is None or name == "":
        return tuple(settings.event_types)
    event_type = resolve_type(name)
    if event_type not in settings.event_types:
        raise DlqUsageError(f"type {event_type} is not one this deployment runs (EVENT_TYPES)")
    return (event_type,)


def parse_query(settings: Settings, params: Mapping[str, list[str]]) -> tuple[dlq_query.Query, int]:
    """Query-string parameters (each a list of values) -> (query, page size)."""
    unknown = sorted(set(params) - QUERY_KEYS)
    if unknown:
        raise DlqUsageError(
            f"unknown filter {unknown[0]!r}; known: {', '.join(sorted(QUERY_KEYS))}"
        )
    one = {k: v[-1] for k, v in params.items() if k != "event_id"}
    status = one.get("status") or None
    if status is not None and status not in dlq_query.STATUSES:
        raise DlqUsageError(
            f"status: expected one of {', '.join(dlq_query.STATUSES)}, got {status!r}"
        )
    size = _int("limit", one["limit"], 1, dlq_query.PAGE_MAX) if "limit" in one else PAGE_DEFAULT
    partition = _int("partition", one["partition"], 0, 100_000) if "partition" in one else None
    filters = make_filters(
        one.get("error_class") or None,
        one.get("since") or None,
        one.get("until") or None,
        partition,
        params.get("event_id"),
    )
    cursor = dlq_query.decode_cursor(one["cursor"]) if one.get("cursor") else None
    types = types_of(settings, one.get("type"))
    check_partition(settings, types, filters)
    return dlq_query.Query(types, filters, status, cursor), size


# The fields of a replay request (the admin API's JSON body, the CLI's options).
REPLAY_FIELDS = frozenset(
    (
        *("type", "error_class", "since", "until", "partition", "event_id", "limit"),
        *("rate", "dry_run", "include_replayed", "max_replays", "target"),
    )
)


def replay_request(settings: Settings, body: Mapping[str, Any]) -> dlq_jobs.ReplayRequest:
    """A JSON body (or the CLI's options as such a dict) -> a checked replay request."""
    unknown = sorted(set(body) - REPLAY_FIELDS)
    if unknown:
        known = ", ".join(sorted(REPLAY_FIELDS))
        raise DlqUsageError(f"unknown field {unknown[0]!r}; known: {known}")

    def typed(name: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = body.get(name, default)
        # JSON true is a Python bool, which is also an int: only a bool field takes one.
        wrong = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        if value is not None and wrong:
            raise DlqUsageError(f"{name}: wrong type {type(value).__name__}")
        return value

    event_type = typed("type", str)
    if not event_type:
        raise DlqUsageError("type: required (Email, ChemicalStatus, ...)")
    partition, limit = typed("partition", int), typed("limit", int)
    if (partition is not None and partition < 0) or (limit is not None and limit < 1):
        raise DlqUsageError("partition must be >= 0 and limit >= 1")
    ids = typed("event_id", (list, str))
    ids = [ids] if isinstance(ids, str) else ids
    if ids is not None and not all(isinstance(i, str) for i in ids):
        raise DlqUsageError("event_id: a string or a list of strings")
    rate = typed("rate", (str, int, float), "100/s")
    max_replays = typed("max_replays", int, dlq_jobs.DEFAULT_MAX_REPLAYS)
    if not 1 <= max_replays <= 1_000:
        raise DlqUsageError("max_replays: from 1 to 1000")
    target = typed("target", str, dlq_jobs.DEFAULT_TARGET)
    if target not in dlq_jobs.TARGETS:
        raise DlqUsageError(
            f"target: expected one of {', '.join(dlq_jobs.TARGETS)}, got {target!r}"
        )
    return dlq_jobs.ReplayRequest(
        event_type=types_of(settings, event_type)[0],
        filters=make_filters(
            typed("error_class", str),
            typed("since", str),
            typed("until", str),
            partition,
            ids,
            limit,
        ),
        rate=parse_rate(str(rate)),
        dry_run=bool(typed("dry_run", bool, False)),
        include_replayed=bool(typed("include_replayed", bool, False)),
        max_replays=max_replays,
        target=target,
    )


def check_partition(settings: Settings, types: Sequence[str], filters: Filters) -> None:
    """A partition the DLQ topic does not have is a usage error, not an empty answer."""
    if filters.partition is None:
        return
    for event_type in types:
        topic = dlq_topic(settings, event_type)
        count = partition_count(settings, topic)
        if filters.partition >= count:
            raise DlqUsageError(
                f"--partition {filters.partition}: {topic} has partitions 0..{count - 1}"
            )


def parse_limit(text: str | None, default: int, high: int) -> int:
    return default if text is None else _int("limit", text, 1, high)


def purge_request(
    settings: Settings, body: Mapping[str, Any]
) -> tuple[str, Filters, int | None, bool]:
    """A purge's JSON body -> (type, filters, older_than_days, dry_run)."""
    rest = {k: v for k, v in body.items() if k not in ("older_than_days",)}
    days = body.get("older_than_days")
    if days is not None and (type(days) is not int or not 0 <= days <= MAX_AGE_DAYS):
        raise DlqUsageError(f"older_than_days: a whole number from 0 to {MAX_AGE_DAYS}")
    for name in ("rate", "include_replayed", "max_replays", "target"):
        if name in rest:
            raise DlqUsageError(f"unknown field {name!r} for a purge")
    request = replay_request(settings, rest)
    return request.event_type, request.filters, days, request.dry_run
