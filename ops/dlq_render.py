"""How DLQ records are shown: the `--json` form, the summary counts and the terminal text.

Everything here is pure (records in, dicts or text out) so the runbook's output is unit-tested
without a broker. The JSON form is read back too (`record_from_json`): scripts/ replay tools
consume `dlq list --json`, so both directions of that format live together. Reading the topics
is ops/dlq.py; the commands that print are ops/cli_dlq.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from typing import Any

from ops.dlq import iso
from retry_topics.dlq_record import DlqRecord
from schemas.safe_text import escape_controls

# -- JSON (what `dlq list --json` prints and scripts/ replay tools read) ---------------------


def encode_bytes(data: bytes | None, force_base64: bool = False) -> tuple[str | None, str]:
    """(text, encoding): UTF-8 text when the bytes are valid UTF-8, else base64."""
    if data is None:
        return None, "utf-8"
    if not force_base64:
        try:
            return data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode("ascii"), "base64"


def decode_bytes(text: str | None, encoding: str) -> bytes | None:
    if text is None:
        return None
    if encoding == "base64":
        return base64.b64decode(text, validate=True)
    if encoding == "utf-8":
        return text.encode("utf-8")
    raise ValueError(f"unknown encoding {encoding!r}")


def record_to_json(
    record: DlqRecord, *, replayed: dict[str, Any] | None = None, force_base64: bool = False
) -> dict[str, Any]:
    key, key_encoding = encode_bytes(record.key, force_base64)
    value, value_encoding = encode_bytes(record.value, force_base64)
    headers_binary = force_base64 or any(encode_bytes(v)[1] == "base64" for _n, v in record.headers)
    origin = record.origin
    return {
        "ref": record.ref,
        "event_type": record.event_type,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "timestamp_iso": iso(record.timestamp_ms),
        "key": key,
        "key_encoding": key_encoding,
        "value": value,
        "value_encoding": value_encoding,
        "headers": [[n, encode_bytes(v, headers_binary)[0]] for n, v in record.headers],
        "headers_encoding": "base64" if headers_binary else "utf-8",
        "event_id": record.event_id,
        "error_class": record.error_class,
        "error_message": record.error_message,
        "failure_kind": record.failure_kind,
        "dlq_reason": record.dlq_reason,
        "attempt": record.attempt,
        "first_failure": iso(record.first_failure_ms),
        "replay_count": record.replay_count,
        "replay_id": record.replay_id,
        "origin": None
        if origin is None
        else {
            "topic": origin.topic,
            "partition": origin.partition,
            "offset": origin.offset,
            "timestamp": origin.timestamp_ms,
        },
        "replayed": replayed,
    }


def record_from_json(obj: dict[str, Any]) -> dict[str, Any]:
    """The bytes of a `dlq list --json` item: topic, partition, offset, timestamp, key,
    value, headers (a list of (name, bytes)) - what a replay script produces again."""
    header_encoding = obj.get("headers_encoding", "utf-8")
    return {
        "topic": obj["topic"],
        "partition": obj["partition"],
        "offset": obj["offset"],
        "timestamp": obj["timestamp"],
        "key": decode_bytes(obj["key"], obj.get("key_encoding", "utf-8")),
        "value": decode_bytes(obj["value"], obj.get("value_encoding", "utf-8")),
        "headers": [(n, decode_bytes(v, header_encoding) or b"") for n, v in obj["headers"]],
    }


# -- summary -----------------------------------------------------------------------------------


def summarize(
    event_type: str, topic: str, records: Sequence[DlqRecord], replayed: Iterable[tuple[int, int]]
) -> dict[str, Any]:
    """Counts by error class and failure kind, with oldest/newest DLQ timestamps."""
    done = set(replayed)
    groups: dict[tuple[str, str], list[int]] = {}
    for r in records:
        groups.setdefault((r.error_class or "-", r.failure_kind or "-"), []).append(r.timestamp_ms)
    stamps = [r.timestamp_ms for r in records]
    return {
        "event_type": event_type,
        "topic": topic,
        "count": len(records),
        "replayed": sum(1 for r in records if r.position in done),
        "oldest": iso(min(stamps)) if stamps else None,
        "newest": iso(max(stamps)) if stamps else None,
        "by_error": [
            {
                "error_class": error_class,
                "failure_kind": kind,
                "count": len(times),
                "oldest": iso(min(times)),
                "newest": iso(max(times)),
            }
            for (error_class, kind), times in sorted(groups.items(), key=lambda g: -len(g[1]))
        ],
    }


# -- terminal text (what the commands print without --json) ------------------------------------
# Everything shown comes from record bytes a producer chose: each line goes through
# `_screen`, so an escape sequence (clear screen, window title, hidden text) is printed as
# \x1b..., never acted on (issue 17 #9). JSON needs nothing: json.dumps escapes controls.


def _screen(lines: Iterable[str]) -> str:
    return "\n".join(escape_controls(line) for line in lines)


def _when(ms: int | None) -> str:
    """A time for people: ISO 8601, or the raw number when it is no real time (forged)."""
    if ms is None:
        return "-"
    return iso(ms) or f"{ms} (not a valid time)"


def bounded(data: bytes | None, limit: int = 300) -> str:
    """At most `limit` bytes as text (non-UTF-8 bytes escaped), with the full size if cut."""
    if data is None:
        return "(null)"
    text = data[:limit].decode("utf-8", "backslashreplace")
    return text + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def _v(value: object) -> str:
    return "-" if value is None else str(value)


def _bounded_text(text: str | None) -> str:
    return bounded(text.encode()) if text is not None else "-"


def _origin(record: DlqRecord) -> str:
    o = record.origin
    return "-" if o is None else f"{o.topic}:{o.partition}:{o.offset} at {_when(o.timestamp_ms)}"


def render_summary(rows: Sequence[dict[str, Any]], total: int) -> str:
    """`dlq summary`: one line per event type (rows from `summarize` plus `hidden_by_purge`),
    then one per error class and failure kind."""
    lines = []
    for row in rows:
        lines.append(
            f"{row['event_type']:<15} {row['count']:>7} records  {row['replayed']} replayed  "
            f"{row['hidden_by_purge']} hidden  oldest {row['oldest'] or '-'}  "
            f"newest {row['newest'] or '-'}  ({row['topic']})"
        )
        lines += [
            f"    {g['count']:>7}  {g['error_class']:<28} {g['failure_kind']:<16} "
            f"{g['oldest'] or '-'} .. {g['newest'] or '-'}"
            for g in row["by_error"]
        ]
    return _screen([*lines, f"total {total}"])


def render_list(chosen: Sequence[tuple[DlqRecord, dict[str, Any] | None]]) -> str:
    """`dlq list`: four lines per record (its replay mark, if any, beside it)."""
    lines = []
    for record, mark in chosen:
        lines.append(
            f"{record.ref}  {_when(record.timestamp_ms)}  attempt={_v(record.attempt)}  "
            f"replays={record.replay_count}  {_v(record.failure_kind)}/{_v(record.dlq_reason)}  "
            f"event={_v(record.event_id)}" + ("  [replayed]" if mark else "")
        )
        lines.append(
            f"    error:   {_v(record.error_class)}: {_bounded_text(record.error_message)}"
        )
        lines.append(f"    origin:  {_origin(record)}")
        lines.append(f"    payload: {bounded(record.value)}")
    return _screen([*lines, f"{len(chosen)} records"])


def render_record(record: DlqRecord, mark: dict[str, Any] | None) -> str:
    """`dlq show`: one record in full - every header, the whole payload, the stack trace."""
    payload = record.value or b""
    try:
        body, encoding = payload.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        body, encoding = base64.b64encode(payload).decode(), "base64"
    lines = [
        f"record         {record.ref}  ({record.topic} partition {record.partition} "
        f"offset {record.offset})",
        f"dead-lettered  {_when(record.timestamp_ms)}",
        f"event id       {record.event_id or '-'}",
        f"origin         {_origin(record)}",
        f"group          {_v(record.group)}",
        f"attempts       {_v(record.attempt)}  (first failure {_when(record.first_failure_ms)})",
        f"failure        {_v(record.failure_kind)} (dlq reason: {_v(record.dlq_reason)})",
        f"error          {_v(record.error_class)}: {_v(record.error_message)}",
        f"replays        {record.replay_count} (last replay id {record.replay_id or '-'})"
        + (f"; replayed by {mark['replay_id']} at {mark['replayed_at']}" if mark else ""),
        f"key            {bounded(record.key, 1000)}",
        "headers",
        *(f"  {name}: {bounded(value, 200)}" for name, value in record.headers),
        f"payload ({len(payload)} bytes, {encoding})",
    ]
    # The payload and the stack keep their newlines and tabs: they are blocks, not lines.
    blocks = [body, "stack", record.error_stack or "-"]
    return _screen(lines) + "\n" + "\n".join(escape_controls(b, keep_layout=True) for b in blocks)


def render_replay(data: dict[str, Any]) -> str:
    """`dlq replay`: the records a dry run would send, then the counts and any failures."""
    dry_run = data["dry_run"]
    verb = "would replay" if dry_run else "replayed"
    count = data["would_replay"] if dry_run else data["replayed"]
    lines = list(data["records"]) if dry_run else []
    lines.append(
        f"{'dry run: ' if dry_run else ''}{verb} {count}, skipped "
        f"{data['skipped_already_replayed']} already replayed, failed {data['failed']} "
        f"(replay id {data['replay_id']})"
    )
    lines.append(f"target {data['target_topic']}")
    if data["skipped_replay_cap"]:
        lines.append(f"skipped {data['skipped_replay_cap']} replayed too often (--max-replays)")
    if data["skipped_needs_review"]:
        lines.append(
            f"skipped {data['skipped_needs_review']} business-critical record(s): "
            "approve each with `qchem-events dlq review approve`"
        )
    lines += [f"failed: {ref}" for ref in data["failed_records"]]
    return _screen(lines)


def render_history(rows: Sequence[dict[str, Any]]) -> str:
    """`dlq history`: replay jobs or audit rows, one line each."""
    lines = []
    for row in rows:
        if "job" in row and "status" in row:
            lines.append(
                f"{row['started_at']}  {row['job']}  {row['who']}  {row['status']:<11} "
                f"{'dry-run ' if row['dry_run'] else ''}{row['event_type']} -> "
                f"{row['target_topic'] or '-'}  {row['replayed']}/{row['total']} sent, "
                f"{row['failed']} failed"
            )
        else:
            lines.append(
                f"{row['at']}  {row['actor']}  {row['action']:<16} {row['ref'] or '-'}  "
                f"{row['detail'].get('reason') or ''}"
            )
    return _screen([*lines, f"{len(rows)} rows"])
