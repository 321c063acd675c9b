"""The no-loss oracle: after the system drained, did every produced event get exactly one outcome?

Given what a test produced - valid events in produced order, and hostile records with the
position each one landed at - and the state the system left behind (PostgreSQL tables, the
SMTP sink, the DLQ topics, the consumer groups' committed offsets), it checks:

* **lost** - every valid event has exactly one final outcome: `succeeded` (its dedup row and
  its effect present), or in the DLQ (event record `dlq`/`invalid` *and* a DLQ record at its
  origin stating a reason). A hostile record must be in the DLQ with its original key and
  bytes. Anything else - no record, a record stuck in `retrying`, a success without its
  effect - is lost.
* **duplicated** - no database effect applied twice: history rows, reports and look-ups per
  event id. Emails are counted at the SMTP sink (Message-ID = event id) and reported apart:
  an email is sent before its transaction commits, so a crash in between resends it
  (RELIABILITY.md explains the window); tests state how many they tolerate.
* **stray** - an effect for an event whose outcome is not success.
* **offsets** - each group's committed offsets equal the end offsets of the main topic and
  of every retry tier.
* **order** - per key, the ChemicalStatus changes applied (history row order) follow the
  produced order for the events that were never retried; the current status of each
  chemical is the one of its newest successful event.

`Oracle.wait_drained` polls cheaply until the outcome counts and offsets settle;
`Oracle.check` computes the `OracleReport` (the figures) and `assert_clean` fails the test
with the first problems found.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.devservers import SmtpSink
from retry_topics import headers as rh
from retry_topics.naming import TopicNames
from schemas.events import Event
from tests.support.db import rows
from tests.support.kafka import committed_offsets, end_offsets, read_all

FINAL = ("succeeded", "dlq", "invalid")
UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# The longest an email may sit between its SMTP send and its commit and still be explained:
# the send, a write batch and a commit on a loaded 2-core machine.
EMAIL_WINDOW_S = 3.0
EFFECT_TABLES = {
    "ChemicalStatus": "chemical_status_history",
    "Report": "reports",
    "ChemicalLookup": "chemical_lookups",
}


@dataclass(frozen=True)
class Hostile:
    """A record that must end in the DLQ with its bytes: where it landed and what it was."""

    event_type: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    category: str


@dataclass
class OracleReport:
    name: str
    events: int  # valid events produced
    hostile: int  # hostile records produced
    faults: int  # faults injected
    succeeded: int
    dlq: int  # valid events whose final outcome is the DLQ
    lost: int
    duplicated: int  # database effects applied more than once (must be 0)
    stray: int  # effects of events whose outcome is not success (must be 0)
    email_duplicates: int  # extra copies at the SMTP sink (reported; see RELIABILITY.md)
    unexplained_email_duplicates: int  # ... whose copies do not straddle a fault (must be 0)
    order_violations: int  # keys whose applied order differs from the produced order
    offset_mismatches: int  # partitions whose committed offset is not the end offset
    drain_s: float | None  # from the end of the faults until drained; None: never drained
    problems: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        drain = "NEVER" if self.drain_s is None else f"{self.drain_s:.1f}s"
        extra = "".join(f" {k}={v}" for k, v in self.extra.items())
        return (
            f"FAULT {self.name}: events={self.events} hostile={self.hostile} "
            f"faults={self.faults} succeeded={self.succeeded} dlq={self.dlq} lost={self.lost} "
            f"duplicated={self.duplicated} stray={self.stray} "
            f"email_duplicates={self.email_duplicates} "
            f"(unexplained {self.unexplained_email_duplicates}) "
            f"order_violations={self.order_violations} "
            f"offset_mismatches={self.offset_mismatches} drain={drain}{extra}"
        )

    def assert_clean(self) -> None:
        failures = []
        if self.lost:
            failures.append(f"{self.lost} lost")
        if self.duplicated:
            failures.append(f"{self.duplicated} effects applied twice")
        if self.stray:
            failures.append(f"{self.stray} effects of events that did not succeed")
        if self.unexplained_email_duplicates:
            failures.append(
                f"{self.unexplained_email_duplicates} duplicate emails not explained by a fault "
                "between the send and its commit"
            )
        if self.order_violations:
            failures.append(f"{self.order_violations} keys out of order")
        if self.offset_mismatches:
            failures.append(f"{self.offset_mismatches} partitions not committed to the end")
        if self.drain_s is None:
            failures.append("never drained")
        if failures:
            details = "\n  ".join(self.problems[:25])
            raise AssertionError(f"{self.summary()}\n{'; '.join(failures)}\n  {details}")


class Oracle:
    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        *,
        name: str,
        smtp: SmtpSink | None = None,
        must_succeed: Iterable[str] = (),
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.name = name
        self.smtp = smtp
        self.must_succeed = set(must_succeed)  # event types that may not end in the DLQ
        self.events: list[Event] = []  # produced order
        self.hostile: list[Hostile] = []
        # Events produced more than once on purpose (overlapping copies): how many records.
        self.copies: Counter[str] = Counter()

    # -- what was produced ----------------------------------------------------------------

    def expect(self, events: Iterable[Event]) -> None:
        """Valid events, in the order they were produced."""
        self.events.extend(events)

    def expect_copies(self, events: Iterable[Event]) -> None:
        """Each of `events` was produced once more (see faults.with_copies): its extra record
        must end `duplicate`, and its effect happen once."""
        for event in events:
            self.copies[event.event_id] += 1

    def expect_hostile(self, records: Iterable[Hostile]) -> None:
        self.hostile.extend(records)

    def names(self, event_type: str) -> TopicNames:
        return TopicNames(
            self.settings.topic_prefix, event_type, self.settings.retries_for(event_type)
        )

    def _types(self) -> list[str]:
        seen = {e.event_type for e in self.events} | {h.event_type for h in self.hostile}
        return [t for t in self.settings.event_types if t in seen]

    # -- waiting --------------------------------------------------------------------------

    def _counts(self) -> dict[str, Counter[str]] | None:
        groups = [self.names(t).group for t in self._types()]
        try:
            found = rows(
                self.engine,
                "SELECT consumer_group, status, count(*) FROM event_records "
                "WHERE consumer_group = ANY(:g) GROUP BY consumer_group, status",
                g=groups,
            )
        except Exception:  # the database is away: not drained
            return None
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for group, status, n in found:
            counts[group][status] = n
        return counts

    def outcomes_settled(self) -> bool:
        counts = self._counts()
        if counts is None:
            return False
        valid = Counter(e.event_type for e in self.events)
        hostile = Counter(h.event_type for h in self.hostile)
        for event_type in self._types():
            c = counts.get(self.names(event_type).group, Counter())
            if c["retrying"]:
                return False
            if event_type in self.must_succeed:
                if c["succeeded"] < valid[event_type]:
                    return False
                if c["dlq"] + c["invalid"] < hostile[event_type]:
                    return False
            elif sum(c[s] for s in FINAL) < valid[event_type] + hostile[event_type]:
                return False
        return True

    def offset_mismatches(self) -> list[str]:
        mismatches = []
        for event_type in self._types():
            n = self.names(event_type)
            for topic in n.consumed():
                try:
                    committed = committed_offsets(self.settings, n.group, topic)
                    ends = end_offsets(self.settings, topic)
                except Exception as exc:
                    return [f"{topic}: offsets unreadable ({exc})"]
                for partition, end in ends.items():
                    got = committed.get(partition, -1)
                    if got < 0 and end == 0:
                        continue  # never had a record: nothing to commit
                    if got != end:
                        mismatches.append(f"{n.group} {topic}[{partition}] at {got}, end {end}")
        return mismatches

    def drained(self) -> bool:
        return self.outcomes_settled() and not self.offset_mismatches()

    def wait_drained(self, since: float, timeout: float) -> float | None:
        """Seconds from `since` (time.monotonic) until drained; None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.outcomes_settled() and not self.offset_mismatches():
                return time.monotonic() - since
            time.sleep(0.25)
        return None

    # -- the verdict ----------------------------------------------------------------------

    def check(
        self,
        *,
        faults: int,
        drain_s: float | None,
        fault_times: Iterable[float] = (),
        window_s: float = EMAIL_WINDOW_S,
    ) -> OracleReport:
        """The verdict. `fault_times` (time.monotonic() when each fault struck) explain a
        duplicate email when its first copy reached the sink at most `window_s` before a
        fault and its second copy after that fault: the send happened, the commit did not."""
        report = OracleReport(
            name=self.name,
            events=len(self.events),
            hostile=len(self.hostile),
            faults=faults,
            succeeded=0,
            dlq=0,
            lost=0,
            duplicated=0,
            stray=0,
            email_duplicates=0,
            unexplained_email_duplicates=0,
            order_violations=0,
            offset_mismatches=0,
            drain_s=drain_s,
        )
        problems = report.problems
        types = self._types()
        groups = {self.names(t).group: t for t in types}
        records, dedup = self._load_outcomes(list(groups))
        dlq = {t: self._read_dlq(t) for t in types}

        # Valid events: exactly one final outcome each.
        by_event: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in records:
            if row["event_id"] is not None:
                by_event[(row["consumer_group"], row["event_id"])].append(row)
        hostile_origins = {
            (self.names(h.event_type).group, h.topic, h.partition, h.offset) for h in self.hostile
        }
        outcome: dict[str, str] = {}
        attempts: dict[str, int] = {}
        expected_ids = set()
        for event in self.events:
            group = self.names(event.event_type).group
            expected_ids.add((group, event.event_id))
            rows = [
                r
                for r in by_event.get((group, event.event_id), [])
                if self._origin(r) not in hostile_origins
            ]
            if not rows:
                report.lost += 1
                problems.append(f"lost: {event.event_type} {event.event_id} has no outcome")
                continue
            rows = self._one_outcome(report, event, rows)
            if not rows:
                continue
            row = rows[0]
            status = row["status"]
            outcome[event.event_id] = status
            attempts[event.event_id] = row["attempts"]
            if status == "succeeded":
                report.succeeded += 1
                if (group, event.event_id) not in dedup:
                    report.lost += 1
                    problems.append(f"lost: {event.event_id} succeeded without a dedup row")
            elif status in ("dlq", "invalid"):
                copy = dlq[event.event_type].get(self._origin(row)[1:])
                if event.event_type in self.must_succeed:
                    report.lost += 1
                    problems.append(f"lost: {event.event_type} {event.event_id} left in the DLQ")
                elif copy is None or not copy["reason"]:
                    report.lost += 1
                    problems.append(f"lost: {event.event_id} is {status} but not in the DLQ")
                else:
                    report.dlq += 1
            else:
                report.lost += 1
                problems.append(f"lost: {event.event_id} stuck in status {status!r}")

        # Hostile records: each in the DLQ with its original key and bytes, status not success.
        by_origin = {self._origin(r): r for r in records}
        for h in self.hostile:
            group = self.names(h.event_type).group
            outcome_row = by_origin.get((group, h.topic, h.partition, h.offset))
            found = dlq[h.event_type].get((h.topic, h.partition, h.offset))
            where = f"{h.category} at {h.topic}[{h.partition}]@{h.offset}"
            if outcome_row is None or outcome_row["status"] not in ("dlq", "invalid"):
                report.lost += 1
                status = outcome_row and outcome_row["status"]
                problems.append(f"hostile {where}: outcome {status}")
            elif found is None:
                report.lost += 1
                problems.append(f"hostile {where}: not in the DLQ")
            elif found["value"] != (h.value or b"") or found["key"] != h.key:
                report.lost += 1
                problems.append(f"hostile {where}: the DLQ copy is not the original bytes")
            elif not found["reason"]:
                report.lost += 1
                problems.append(f"hostile {where}: DLQ copy without a reason")

        # Records nobody produced (e.g. one event under two origins).
        expected_origins = hostile_origins | {
            self._origin(r) for r in records if (r["consumer_group"], r["event_id"]) in expected_ids
        }
        unexpected = [r for r in records if self._origin(r) not in expected_origins]
        if unexpected:
            problems.append(f"{len(unexpected)} unexpected event records, e.g. {unexpected[0]}")
            report.duplicated += len(unexpected)

        self._check_effects(report, outcome)
        self._explain_email_duplicates(report, sorted(fault_times), window_s)
        self._check_order(report, outcome, attempts)
        mismatches = self.offset_mismatches()
        settle = time.monotonic() + 10  # a last commit or DLQ redrive may still be landing
        while mismatches and time.monotonic() < settle:
            time.sleep(0.5)
            mismatches = self.offset_mismatches()
        report.offset_mismatches = len(mismatches)
        problems.extend(mismatches[:10])
        return report

    # -- helpers --------------------------------------------------------------------------

    def _one_outcome(
        self, report: OracleReport, event: Event, rows: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The event's outcome row first; [] when its copies did not each end once, one of
        them with the outcome and the others `duplicate`."""
        expected = 1 + self.copies[event.event_id]
        where = [self._origin(r) for r in rows]
        if len(rows) < expected:
            report.lost += 1
            report.problems.append(f"lost: {event.event_id}: {len(rows)} of {expected} copies")
            return []
        if len(rows) > expected:
            report.duplicated += len(rows) - expected
            report.problems.append(f"{event.event_id}: {len(rows)} outcomes {where}")
        primary = [r for r in rows if r["status"] != "duplicate"]
        if expected > 1 and len(primary) != 1:
            report.duplicated += max(0, len(primary) - 1)
            report.lost += 0 if primary else 1
            report.problems.append(
                f"{event.event_id}: copies ended {[r['status'] for r in rows]} at {where}"
            )
            return []
        return primary + [r for r in rows if r["status"] == "duplicate"] if primary else rows

    @staticmethod
    def _origin(row: dict[str, Any]) -> tuple[str, str, int, int]:
        return (
            row["consumer_group"],
            row["origin_topic"],
            row["origin_partition"],
            row["origin_offset"],
        )

    def _load_outcomes(
        self, groups: list[str]
    ) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
        records = rows(
            self.engine,
            "SELECT consumer_group, origin_topic, origin_partition, origin_offset, "
            "event_id, status, attempts, last_error FROM event_records "
            "WHERE consumer_group = ANY(:g)",
            g=groups,
        )
        dedup = rows(
            self.engine,
            "SELECT consumer_group, event_id FROM dedup_keys WHERE consumer_group = ANY(:g)",
            g=groups,
        )
        return [dict(r._mapping) for r in records], {(g, e) for g, e in dedup}

    def _read_dlq(self, event_type: str) -> dict[tuple[str, int, int], dict[str, Any]]:
        """DLQ records by origin; the newest copy wins (a redriven record can return)."""
        copies: dict[tuple[str, int, int], dict[str, Any]] = {}
        for message in read_all(self.settings.kafka_bootstrap_servers, self.names(event_type).dlq):
            h = rh.as_dict(message.headers())
            origin = rh.parse_origin(message.headers())
            if origin is None:
                continue
            copies[(origin.topic, origin.partition, origin.offset)] = {
                "key": message.key(),
                "value": message.value() or b"",
                "reason": h.get(rh.DLQ_REASON) or h.get(rh.FAILURE_KIND),
            }
        return copies

    def _check_effects(self, report: OracleReport, outcome: dict[str, str]) -> None:
        by_type: dict[str, list[str]] = defaultdict(list)
        for event in self.events:
            by_type[event.event_type].append(event.event_id)
        problems = report.problems
        # A hostile record that parses as an event (a valid body under hostile retry headers,
        # a string too long for its column) must have no effect at all.
        for h in self.hostile:
            event_id = event_id_of(h.value)
            if event_id is not None and h.event_type in EFFECT_TABLES:
                outcome.setdefault(event_id, "dlq")
                by_type[h.event_type].append(event_id)
        for event_type, ids in by_type.items():
            if event_type == "Email":
                if self.smtp is None:
                    continue
                sent = self.smtp.count_by_event_id()
            else:
                table = EFFECT_TABLES[event_type]
                sent = Counter(
                    dict(
                        rows(
                            self.engine,
                            f"SELECT event_id, count(*) FROM {table} "
                            "WHERE event_id = ANY(:ids) GROUP BY event_id",
                            ids=ids,
                        )
                    )
                )
            for event_id in ids:
                n = sent.get(event_id, 0)
                status = outcome.get(event_id)
                if status == "succeeded" and n == 0:
                    report.lost += 1
                    problems.append(f"lost: {event_type} {event_id} succeeded, no effect")
                if status is not None and status != "succeeded" and n > 0:
                    report.stray += 1
                    problems.append(f"stray: {event_type} {event_id} is {status}, has an effect")
                if n > 1:
                    if event_type == "Email":
                        report.email_duplicates += n - 1
                    else:
                        report.duplicated += n - 1
                        problems.append(f"duplicated: {event_type} {event_id} applied {n} times")

    def _explain_email_duplicates(
        self, report: OracleReport, faults: list[float], window_s: float
    ) -> None:
        if self.smtp is None or not report.email_duplicates:
            return
        copies: dict[str | None, list[float]] = defaultdict(list)
        for message in self.smtp.messages:
            copies[message.event_id].append(message.received_at)
        for event_id, times in copies.items():
            for first, again in itertools.pairwise(times):
                # a fault struck between the two copies (its mark is taken when the injection
                # starts, so up to 1 s before it bites) and soon after the first one
                struck = [f for f in faults if first - 1.0 <= f <= again and f - first <= window_s]
                if not struck:
                    report.unexplained_email_duplicates += 1
                    report.problems.append(
                        f"email {event_id} sent again {again - first:.2f}s later, no fault between"
                    )

    def _check_order(
        self, report: OracleReport, outcome: dict[str, str], attempts: dict[str, int]
    ) -> None:
        events = [e for e in self.events if e.event_type == "ChemicalStatus"]
        if not events:
            return
        in_order = {
            e.event_id
            for e in events
            if outcome.get(e.event_id) == "succeeded" and attempts.get(e.event_id) == 1
        }
        produced: dict[str, list[str]] = defaultdict(list)
        newest: dict[str, str] = {}
        for e in events:  # produced order; occurred_at increases with it
            if e.event_id in in_order:
                produced[e.key].append(e.event_id)
            if outcome.get(e.event_id) == "succeeded":
                newest[e.payload.chemical_id] = e.event_id
        ids = [e.event_id for e in events]
        history = rows(
            self.engine,
            "SELECT chemical_id, event_id FROM chemical_status_history "
            "WHERE event_id = ANY(:ids) ORDER BY id",
            ids=ids,
        )
        current: dict[str, str] = dict(
            rows(
                self.engine,
                "SELECT chemical_id, status_event_id FROM chemicals WHERE chemical_id = ANY(:c)",
                c=list(newest),
            )
        )
        applied: dict[str, list[str]] = defaultdict(list)
        key_of = {e.event_id: e.key for e in events}
        for _chemical, event_id in history:
            if event_id in in_order:
                applied[key_of[event_id]].append(event_id)
        for key, expected in produced.items():
            if applied.get(key, []) != expected:
                report.order_violations += 1
                report.problems.append(
                    f"order: key {key} applied {applied.get(key, [])[:6]}..., "
                    f"produced {expected[:6]}..."
                )
        for chemical, event_id in newest.items():
            if current.get(chemical) != event_id:
                report.order_violations += 1
                report.problems.append(
                    f"final status of {chemical}: event {current.get(chemical)}, "
                    f"newest produced {event_id}"
                )


def dlq_reasons(settings: Settings, event_type: str) -> Counter[str]:
    """How many DLQ records per stated reason (for the figures)."""
    names = TopicNames(settings.topic_prefix, event_type, settings.retries_for(event_type))
    reasons: Counter[str] = Counter()
    for message in read_all(settings.kafka_bootstrap_servers, names.dlq, timeout=5):
        h = rh.as_dict(message.headers())
        reasons[(h.get(rh.DLQ_REASON) or b"?").decode(errors="replace")] += 1
    return reasons


def event_id_of(value: bytes | None) -> str | None:
    """The event id (a UUID) in a JSON record value, if it has one."""
    try:
        event_id = json.loads(value or b"")["event_id"]
    except Exception:
        return None
    if isinstance(event_id, str) and UUID.fullmatch(event_id):
        return event_id.lower()
    return None
