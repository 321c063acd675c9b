"""The design document's "Production Metrics Dashboard", computed for one scenario run.

The outcome types (checks, timeline, outcome) and pure functions over what the run read back
(its `event_records` rows, its retry-tier and DLQ records), so the numbers are the
application's own records, not the scenario's bookkeeping:

* success rate by event type: succeeded / (succeeded + dlq + invalid), as `qchem-events stats`;
* processing time P50/P90/P99/max of `event_records.processing_ms` of the succeeded events
  (linear interpolation, like PostgreSQL's percentile_cont used by `stats`);
* retry analysis: each event once, by how it ended - succeeded on attempt 1, 2, 3 (4+), or
  sent to the DLQ (then recovered by a redrive/replay, INVALID, or still there). A replayed
  event's record says attempt 1 again, so "was it ever dead-lettered" comes from the DLQ's
  origin headers rather than from the attempt count;
* a short timeline: the scenario's own marks plus the failures clustered from the retry tiers
  and DLQ (each record there carries its error class, message and time).

Kept apart from runner.py (which does the I/O) so that module stays readable.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

FINAL = ("succeeded", "dlq", "invalid")
Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Check:
    """One promise of the design document, verified on this run."""

    name: str
    ok: bool
    detail: str = ""

    def reason(self) -> str:
        return f"{'ok' if self.ok else 'FAILED'}: {self.name}" + (
            f" ({self.detail})" if self.detail else ""
        )


@dataclass(frozen=True, slots=True)
class Mark:
    t_s: float  # seconds since the start of the run
    text: str


class Timeline:
    """Wall-clock marks relative to the start of the run (Kafka timestamps are wall clock)."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self._marks: list[Mark] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        self.t0 = time.time()

    def mark(self, text: str, at: float | None = None) -> None:
        with self._lock:
            self._marks.append(Mark(round((at or time.time()) - self.t0, 2), text))

    def extend(self, marks: Iterable[Mark]) -> None:
        with self._lock:
            self._marks.extend(marks)

    def marks(self) -> list[Mark]:
        with self._lock:
            return sorted(self._marks, key=lambda m: m.t_s)


@dataclass(frozen=True, slots=True)
class Row:
    """The columns of an `event_records` row the dashboard needs."""

    event_type: str
    status: str
    attempts: int
    processing_ms: int | None
    origin_topic: str
    origin_partition: int
    origin_offset: int
    updated_at: datetime


@dataclass(slots=True)
class Outcome:
    """A scenario's result: did the document's promise hold, and its dashboard."""

    scenario: str
    title: str
    promise: str
    run_prefix: str
    checks: list[Check]
    dashboard: dict[str, Any]
    timeline: list[Mark]
    facts: dict[str, Any] = field(default_factory=dict)
    highlights: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        return [c.reason() for c in self.checks]

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "title": self.title,
            "promise": self.promise,
            "passed": self.passed,
            "reasons": self.reasons,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "dashboard": self.dashboard,
            "timeline": [{"t_s": m.t_s, "text": m.text} for m in self.timeline],
            "highlights": self.highlights,
            "facts": self.facts,
            "duration_s": self.duration_s,
            "run_prefix": self.run_prefix,
        }


# -- computation -------------------------------------------------------------------------------


def percentile_cont(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def percentile(values: Sequence[float], q: float) -> float | None:
    """`percentile_cont`, to 0.1 (the dashboard's milliseconds)."""
    value = percentile_cont(values, q)
    return None if value is None else round(value, 1)


def compute_dashboard(
    rows: Sequence[Row], dlq_origins: set[tuple[str, int, int]]
) -> dict[str, Any]:
    by_type: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = by_type.setdefault(row.event_type, {s: 0 for s in FINAL} | {"unfinished": 0})
        entry[row.status if row.status in FINAL else "unfinished"] += 1
    for entry in by_type.values():
        final = sum(entry[s] for s in FINAL)
        entry["total"] = final + entry["unfinished"]
        entry["success_rate"] = round(entry["succeeded"] / final, 4) if final else None

    times = [
        r.processing_ms for r in rows if r.status == "succeeded" and r.processing_ms is not None
    ]
    processing = {
        "events": len(times),
        "p50": percentile(times, 0.5),
        "p90": percentile(times, 0.9),
        "p99": percentile(times, 0.99),
        "max": max(times) if times else None,
    }

    attempts: dict[int, int] = {}
    dlq = {"recovered": 0, "invalid": 0, "still_in_dlq": 0}
    finished = [r for r in rows if r.status in FINAL]
    for row in finished:
        if (row.origin_topic, row.origin_partition, row.origin_offset) in dlq_origins:
            key = {"succeeded": "recovered", "invalid": "invalid"}.get(row.status, "still_in_dlq")
            dlq[key] += 1
        elif row.status == "succeeded":
            attempts[row.attempts] = attempts.get(row.attempts, 0) + 1
        else:  # dead-lettered, although its DLQ record was not found: count it as such
            dlq["invalid" if row.status == "invalid" else "still_in_dlq"] += 1
    total = len(finished)
    sent = sum(dlq.values())

    def share(n: int) -> float:
        return round(n / total, 4) if total else 0.0

    retry = {
        "events": total,
        "success_on_attempt": {
            str(a): {"count": n, "share": share(n)} for a, n in sorted(attempts.items())
        },
        "sent_to_dlq": {"count": sent, "share": share(sent), **dlq},
    }
    return {"success_rate": by_type, "processing_ms": processing, "retry_analysis": retry}


def error_summary(error_class: str, message: str) -> str:
    """A short, id-free description of a failure, so that equal failures cluster together."""
    if "LockNotAvailable" in message or "lock timeout" in message:
        return "database lock timeout"
    first = message.splitlines()[0] if message else ""
    first = re.sub(r"'[^']*'|\"[^\"]*\"", "...", first)
    first = re.sub(r"\[Errno \d+\] ", "", first)
    text = f"{error_class}: {first}" if first else error_class
    return text if len(text) <= 72 else text[:69] + "..."


def _describe(tier: str, headers: Headers) -> tuple[str, str]:
    """(cluster key, detail) of one retry-tier, DLQ or replayed record."""
    values = {name: value.decode("utf-8", "replace") for name, value in headers}
    if tier == "main (replayed)":
        auto = values.get("qchem-replay-id", "").startswith("auto-")
        return ("redriven by the DLQ monitor" if auto else "replayed from the DLQ"), ""
    summary = error_summary(
        values.get("qchem-error-class", "?"), values.get("qchem-error-message", "")
    )
    if tier != "DLQ":
        return f"failed ({summary}) -> {tier}", ""
    kind, reason = values.get("qchem-failure-kind"), values.get("qchem-dlq-reason")
    if kind == "invalid" or reason == "invalid":
        return "INVALID -> DLQ, no retry", values.get("qchem-error-message", "").split(":")[0]
    if reason == "exhausted":
        retries = int(values.get("qchem-attempt", "1") or 1) - 1
        return f"dead-lettered after {retries} retries ({summary})", ""
    return f"dead-lettered, {reason} ({summary})", ""


def failure_marks(tiers: dict[str, list[tuple[int, Headers]]], t0: float) -> list[Mark]:
    """One timeline line per tier and kind of failure: when it started, how many, how long."""
    marks: list[Mark] = []
    for tier, records in tiers.items():
        clusters: dict[str, list[Any]] = {}  # key -> [first ts, last ts, count, details]
        for ts, headers in sorted(records, key=lambda r: r[0]):
            key, detail = _describe(tier, headers)
            cluster = clusters.setdefault(key, [ts, ts, 0, set()])
            cluster[1], cluster[2] = ts, cluster[2] + 1
            if detail:
                cluster[3].add(detail)
        for key, (first, last, count, details) in clusters.items():
            text = f"{count} event{'s' if count != 1 else ''} {key}"
            if details:
                text += f": {', '.join(sorted(details))}"
            if last - first >= 1000:
                text += f" (over {(last - first) / 1000:.1f} s)"
            marks.append(Mark(round(first / 1000 - t0, 2), text))
    return marks


# -- rendering ---------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.2f} s"


ORDINALS = {"1": "First", "2": "Second", "3": "Third", "4": "Fourth"}


def render(outcome: Outcome) -> str:
    d = outcome.dashboard
    verdict = "PASSED" if outcome.passed else "FAILED"
    lines = [
        f"=== {outcome.scenario}: {outcome.title} ===",
        f"Promise: {outcome.promise}",
        f"Result:  {verdict} in {outcome.duration_s:.1f} s (run {outcome.run_prefix})",
        "",
        "Success rate",
    ]
    for event_type, e in sorted(d["success_rate"].items()):
        rate = "-" if e["success_rate"] is None else f"{e['success_rate'] * 100:.1f}%"
        extra = f", {e['unfinished']} unfinished" if e["unfinished"] else ""
        lines.append(
            f"  {event_type:<16}{rate:>7}  ({e['succeeded']} succeeded, {e['dlq']} DLQ, "
            f"{e['invalid']} invalid of {e['total']}{extra})"
        )
    p = d["processing_ms"]
    lines += [
        "",
        f"Processing time ({p['events']} succeeded events, event_records.processing_ms)",
        f"  P50 {_ms(p['p50'])}   P90 {_ms(p['p90'])}   P99 {_ms(p['p99'])}   Max {_ms(p['max'])}",
        "",
        f"Retry analysis ({d['retry_analysis']['events']} events)",
    ]
    r = d["retry_analysis"]
    rows = {a: {"count": 0, "share": 0.0} for a in ("1", "2", "3")} | r["success_on_attempt"]
    for attempt, entry in rows.items():
        label = f"{ORDINALS.get(attempt, attempt + 'th')} attempt success"
        lines.append(f"  {label:<26}{entry['share'] * 100:>6.1f}%  {entry['count']:>5}")
    dlq = r["sent_to_dlq"]
    lines.append(f"  {'Sent to DLQ':<26}{dlq['share'] * 100:>6.1f}%  {dlq['count']:>5}")
    if dlq["count"]:
        lines.append(
            f"    of which recovered by redrive/replay {dlq['recovered']}, "
            f"invalid {dlq['invalid']}, still in the DLQ {dlq['still_in_dlq']}"
        )
    if outcome.highlights:
        lines += ["", "Highlights", *(f"  {h}" for h in outcome.highlights)]
    lines += ["", "Timeline", *(f"  {f't{m.t_s:+.1f}s':<9} {m.text}" for m in outcome.timeline)]
    lines += ["", "Checks", *(f"  {c.reason()}" for c in outcome.checks), ""]
    return "\n".join(lines)
