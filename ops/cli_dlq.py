"""`qchem-events dlq ...`: the DLQ runbook commands (summary, list, show, replay, purge).

The logic is in ops/dlq.py (reading, filters), ops/dlq_replay.py (replay, purge) and
ops/dlq_render.py (the JSON and text of records and summaries); this module parses arguments
and prints. Exit codes as everywhere: 0 fine, 1 a problem found, 2 a usage error - always one
line on stderr.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ops.dlq import (
    DlqProblem,
    DlqUsageError,
    Filters,
    dlq_topic,
    iso,
    parse_ref,
    parse_time,
    read_one,
    resolve_type,
)
from ops.dlq_render import (
    record_to_json,
    render_list,
    render_record,
    render_replay,
    render_summary,
    summarize,
)

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from consumers.settings import Settings

dlq_app = typer.Typer(
    help="Inspect, replay and purge the dead-letter topics (the DLQ runbook).",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
TypeOpt = Annotated[
    str | None, typer.Option("--type", "-t", help="Event type: Email, ChemicalStatus, ...")
]
TypeReq = Annotated[
    str, typer.Option("--type", "-t", help="Event type: Email, ChemicalStatus, ...")
]
ErrorClassOpt = Annotated[
    str | None,
    typer.Option("--error-class", help="Only records whose qchem-error-class is this (any case)."),
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since", metavar="ISO", help="Only records dead-lettered at or after (UTC if no zone)."
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="ISO", help="Only records dead-lettered before.")
]
PartitionOpt = Annotated[
    int | None, typer.Option("--partition", min=0, help="Only this DLQ partition.")
]
EventIdOpt = Annotated[
    list[str] | None,
    typer.Option("--event-id", metavar="ID", help="Only this event id (repeatable)."),
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="At most N records.")]
MAX_AGE_DAYS = 10_000  # ~27 years: further back than any record; more overflowed the cutoff
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunFlag = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
]


@contextmanager
def _errors() -> Iterator[None]:
    from ops.cli import fail

    try:
        yield
    except DlqUsageError as exc:
        fail(str(exc), 2)
    except DlqProblem as exc:
        fail(str(exc), 1)


@contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    from storage.db import make_engine

    engine = make_engine(settings, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


def _filters(
    error_class: str | None,
    since: str | None,
    until: str | None,
    partition: int | None,
    event_ids: list[str] | None,
    limit: int | None,
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


def _need_confirmation(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run and not sys.stdin.isatty():
        raise DlqUsageError(f"{what} needs confirmation but stdin is not a terminal; pass --yes")


def _confirm(question: str) -> None:
    from ops.cli import fail

    if not typer.confirm(question, default=False, err=True):
        fail("cancelled: nothing changed", 1)


@contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal (rich if installed, else typer's)."""
    if total == 0 or not sys.stderr.isatty():
        yield lambda _n: None
        return
    try:
        from rich.console import Console
        from rich.progress import Progress
    except ImportError:  # pragma: no cover - typer installs rich
        with typer.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update
        return
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task(label, total=total)
        yield lambda n: progress.advance(task, n)


# -- summary, list, show -----------------------------------------------------------------------


@dlq_app.command()
def summary(event_type: TypeOpt = None, as_json: JsonFlag = False) -> None:
    """DLQ contents by event type and error class, with counts, oldest and newest records.

    Grouped by the qchem-error-class header and the failure kind. Records hidden by a filter
    purge are not counted.

    Example: qchem-events dlq summary --type Email --json
    """
    from ops.cli import emit, settings
    from ops.dlq_replay import select_records

    with _errors():
        s = settings()
        types = [resolve_type(event_type)] if event_type else list(s.event_types)
        rows = []
        with _engine(s) as engine:
            for t in types:
                chosen = select_records(s, engine, t, Filters())
                row = summarize(t, chosen.topic, chosen.records, chosen.replayed)
                rows.append({**row, "hidden_by_purge": chosen.hidden})
    total = sum(row["count"] for row in rows)
    emit({"event_types": rows, "total": total}, as_json, render_summary(rows, total))


@dlq_app.command("list")
def list_records(
    event_type: TypeOpt = None,
    error_class: ErrorClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    partition: PartitionOpt = None,
    event_id: EventIdOpt = None,
    limit: LimitOpt = None,
    force_base64: Annotated[
        bool, typer.Option("--base64", help="Encode every key, value and header in base64.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """DLQ records, oldest first, with error, attempts, timestamps, origin and payload.

    --json prints a list a replay script can consume: topic, partition, offset, timestamp,
    key, value and headers ([name, value] pairs), each text as UTF-8 unless its
    *_encoding field says base64. Records hidden by a filter purge are left out.

    Example: qchem-events dlq list --type Email --error-class DependencyDownError --json
    """
    from ops.cli import emit, settings
    from ops.dlq_replay import select_records

    with _errors():
        s = settings()
        filters = _filters(error_class, since, until, partition, event_id, limit)
        types = [resolve_type(event_type)] if event_type else list(s.event_types)
        chosen = []
        with _engine(s) as engine:
            for t in types:
                sel = select_records(s, engine, t, filters)
                chosen += [(r, sel.replayed.get(r.position)) for r in sel.records]
    if filters.limit is not None:
        chosen = chosen[: filters.limit]
    data = [record_to_json(r, replayed=mark, force_base64=force_base64) for r, mark in chosen]
    emit(data, as_json, render_list(chosen))


@dlq_app.command()
def show(
    ref: Annotated[
        str | None, typer.Argument(metavar="[TYPE:PARTITION:OFFSET]", help="e.g. Email:0:42")
    ] = None,
    event_type: TypeOpt = None,
    partition: Annotated[int | None, typer.Option("--partition", min=0)] = None,
    offset: Annotated[int | None, typer.Option("--offset", min=0)] = None,
    as_json: JsonFlag = False,
) -> None:
    """One DLQ record in full: every header, the whole payload and the stack trace.

    Example: qchem-events dlq show Email:0:42   (or --type Email --partition 0 --offset 42)
    """
    from ops.cli import emit, settings
    from ops.dlq_replay import replayed_positions

    with _errors():
        if ref is not None and (event_type, partition, offset) == (None, None, None):
            t, p, o = parse_ref(ref)
        elif ref is None and None not in (event_type, partition, offset):
            t, p, o = resolve_type(str(event_type)), int(partition or 0), int(offset or 0)
        else:
            raise DlqUsageError("give TYPE:PARTITION:OFFSET or --type, --partition and --offset")
        s = settings()
        record = read_one(s, t, p, o)
        with _engine(s) as engine:
            mark = replayed_positions(engine, dlq_topic(s, t)).get(record.position)
    data = {**record_to_json(record, replayed=mark), "error_stack": record.error_stack}
    emit(data, as_json, render_record(record, mark))


# -- replay, purge -----------------------------------------------------------------------------


@dlq_app.command()
def replay(
    event_type: TypeReq,
    error_class: ErrorClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    partition: PartitionOpt = None,
    event_id: EventIdOpt = None,
    limit: LimitOpt = None,
    rate: Annotated[
        str, typer.Option("--rate", metavar="N/s", help="Records per second.")
    ] = "100/s",
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    include_replayed: Annotated[
        bool, typer.Option("--include-replayed", help="Send records replayed before again too.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send DLQ records back to the type's main topic, once each (asks unless --yes).

    Key, value, the producer's headers and the origin identity are kept, so an effect
    already applied is not applied twice. Each replay is recorded in the database; records
    replayed before are skipped unless --include-replayed. Exit 1 if any record failed.

    Example: qchem-events dlq replay --type Email --error-class DependencyDownError --dry-run
    """
    from ops.cli import emit, settings
    from ops.dlq_replay import parse_rate, plan_replay, run_replay

    with _errors():
        etype = resolve_type(event_type)
        filters = _filters(error_class, since, until, partition, event_id, limit)
        per_second = parse_rate(rate)
        _need_confirmation(yes, dry_run, "replay")
        s = settings()
        with _engine(s) as engine:
            plan = plan_replay(s, engine, etype, filters, include_replayed=include_replayed)
            if plan.to_send and not dry_run and not yes:
                _confirm(f"Replay {len(plan.to_send)} {etype} record(s) to {plan.target}?")
            filter_json = {
                "type": etype,
                **filters.as_json(),
                "include_replayed": include_replayed,
                "rate": per_second,
            }
            with _progress(len(plan.to_send), f"replaying to {plan.target}") as advance:
                outcome = run_replay(
                    s,
                    engine,
                    plan,
                    filter_json=filter_json,
                    rate=per_second,
                    dry_run=dry_run,
                    on_progress=advance,
                )
    emit(outcome.as_json(plan), as_json, render_replay(plan, outcome, dry_run))
    if outcome.failed:
        raise typer.Exit(1)


@dlq_app.command()
def purge(
    event_type: TypeReq,
    older_than_days: Annotated[
        int | None,
        typer.Option(
            "--older-than-days",
            min=0,
            max=MAX_AGE_DAYS,
            help="Cutoff age; without filters the default is DLQ_RETENTION_DAYS (30).",
        ),
    ] = None,
    error_class: ErrorClassOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    partition: PartitionOpt = None,
    event_id: EventIdOpt = None,
    limit: LimitOpt = None,
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete old DLQ records, or hide records matching filters (asks unless --yes).

    Kafka cannot delete single records, so: without filters, every record older than
    --older-than-days is deleted from the topic (admin delete_records up to the first newer
    offset of each partition); with filters (--error-class, --since,
    --until, --partition, --event-id, --limit; and --older-than-days only when given), the
    matching records are HIDDEN - recorded in the database so list, summary and replay skip
    them - and stay in Kafka until the topic's retention removes them.

    Example: qchem-events dlq purge --type Email --older-than-days 7 --dry-run
    """
    from ops.cli import emit, settings
    from ops.dlq_replay import delete_before, hide_records, plan_time_purge, select_records

    with _errors():
        etype = resolve_type(event_type)
        filters = _filters(error_class, since, until, partition, event_id, limit)
        _need_confirmation(yes, dry_run, "purge")
        s = settings()
        topic = dlq_topic(s, etype)
        days = older_than_days if older_than_days is not None else s.dlq_retention_days
        cutoff = int(time.time() * 1000) - days * 86_400_000
        data: dict[str, Any] = {"event_type": etype, "topic": topic, "dry_run": dry_run}
        with _engine(s) as engine:
            if filters.narrows:
                records = select_records(s, engine, etype, filters).records
                if older_than_days is not None:
                    records = [r for r in records if r.timestamp_ms < cutoff]
                if records and not dry_run and not yes:
                    _confirm(f"Hide {len(records)} record(s) of {topic}?")
                count = len(records) if dry_run else hide_records(engine, records)
                data |= {"mode": "hide", "count": count, "records": [r.ref for r in records]}
                text = f"{'dry run: would hide' if dry_run else 'hid'} {count} record(s) of {topic}"
            else:
                cuts = plan_time_purge(s, etype, cutoff)
                total = sum(c.count for c in cuts)
                if total and not dry_run and not yes:
                    _confirm(f"Delete {total} record(s) older than {iso(cutoff)} from {topic}?")
                count = total if dry_run else delete_before(s, engine, etype, cuts)
                data |= {
                    "mode": "delete",
                    "cutoff": iso(cutoff),
                    "count": count,
                    "partitions": [
                        {"partition": c.partition, "before_offset": c.cut, "count": c.count}
                        for c in cuts
                    ],
                }
                text = (
                    f"{'dry run: would delete' if dry_run else 'deleted'} {count} record(s) "
                    f"older than {iso(cutoff)} from {topic}"
                )
    emit(data, as_json, text)
