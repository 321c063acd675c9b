"""`qchem-events dlq ...`: the DLQ runbook commands (summary, list, show, replay, purge).

The logic is in ops/dlq.py (reading, filters), ops/dlq_replay.py (replay, purge) and
ops/dlq_render.py (the JSON and text of records and summaries); this module parses arguments
and prints. Exit codes as everywhere: 0 fine, 1 a problem found, 2 a usage error - always one
line on stderr.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ops.cli_common import JsonFlag
from ops.cli_dlq_options import (
    NO_FILTERS,
    DryRunFlag,
    FilterOptions,
    IncludeReplayedFlag,
    MaxReplaysOpt,
    RateOpt,
    TargetOpt,
    TypeOpt,
    TypeReq,
    YesFlag,
    confirm,
    engine_of,
    errors,
    need_confirmation,
    progress,
    with_filters,
)
from ops.dlq import MAX_AGE_DAYS, DlqUsageError, dlq_topic, parse_ref, read_one, resolve_type
from ops.dlq_render import (
    record_to_json,
    render_list,
    render_record,
    render_replay,
    render_summary,
)

dlq_app = typer.Typer(
    help="Inspect, replay and purge the dead-letter topics (the DLQ runbook).",
    no_args_is_help=True,
)

# -- summary, list, show -----------------------------------------------------------------------


@dlq_app.command()
def summary(event_type: TypeOpt = None, as_json: JsonFlag = False) -> None:
    """DLQ contents by event type and error class, with counts, oldest and newest records.

    Grouped by the qchem-error-class header and the failure kind. Records hidden by a filter
    purge are not counted.

    Example: qchem-events dlq summary --type Email --json
    """
    from ops import dlq_service
    from ops.cli_common import emit, settings

    with errors():
        s = settings()
        types = dlq_service.types_of(s, event_type)
        with engine_of(s) as engine:
            dlq_service.sync(s, engine, types)  # records that reached the topic otherwise
            data = dlq_service.summary(s, engine, types)
    emit(data, as_json, render_summary(data["event_types"], data["total"]))


@dlq_app.command("list")
@with_filters
def list_records(
    event_type: TypeOpt = None,
    filters: FilterOptions = NO_FILTERS,
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
    from ops import dlq_service
    from ops.cli_common import emit, settings
    from ops.dlq_jobs import with_bytes
    from ops.dlq_query import Query, iter_entries
    from ops.dlq_replay import replayed_positions

    with errors():
        s = settings()
        chosen_filters = filters.filters()
        types = dlq_service.types_of(s, event_type)
        dlq_service.check_partition(s, types, chosen_filters)
        chosen = []
        with engine_of(s) as engine:
            dlq_service.sync(s, engine, types)
            marks = {t: replayed_positions(engine, dlq_topic(s, t)) for t in types}
            # The index selects; Kafka gives the bytes, a page at a time.
            page: list[dict[str, Any]] = []
            for row in iter_entries(s, engine, Query(tuple(types), chosen_filters)):
                page.append(row)
                if len(page) >= 500:
                    chosen += with_bytes(s, page, marks)
                    page = []
            chosen += with_bytes(s, page, marks)
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
    from ops.cli_common import emit, settings
    from ops.dlq_replay import replayed_positions

    with errors():
        if ref is not None and (event_type, partition, offset) == (None, None, None):
            t, p, o = parse_ref(ref)
        elif ref is None and None not in (event_type, partition, offset):
            t, p, o = resolve_type(str(event_type)), int(partition or 0), int(offset or 0)
        else:
            raise DlqUsageError("give TYPE:PARTITION:OFFSET or --type, --partition and --offset")
        s = settings()
        record = read_one(s, t, p, o)
        with engine_of(s) as engine:
            mark = replayed_positions(engine, dlq_topic(s, t)).get(record.position)
    data = {**record_to_json(record, replayed=mark), "error_stack": record.error_stack}
    emit(data, as_json, render_record(record, mark))


# -- replay, purge -----------------------------------------------------------------------------


@dlq_app.command()
@with_filters
def replay(
    event_type: TypeReq,
    filters: FilterOptions = NO_FILTERS,
    rate: RateOpt = "100/s",
    dry_run: DryRunFlag = False,
    yes: YesFlag = False,
    include_replayed: IncludeReplayedFlag = False,
    max_replays: MaxReplaysOpt = 5,
    target: TargetOpt = "main",
    as_json: JsonFlag = False,
) -> None:
    """Send DLQ records back to the type's main topic (or --target retry), once each (asks
    unless --yes).

    Key, value, the producer's headers and the origin identity are kept, so an effect
    already applied is not applied twice. Each replay is recorded in the database; records
    replayed before are skipped unless --include-replayed. Business-critical types
    (CRITICAL_TYPES) are not replayed by a filter: `dlq review` approves them one by one.
    Exit 1 if any record failed.

    Example: qchem-events dlq replay --type Email --error-class DependencyDownError --dry-run
    """
    from ops import dlq_service
    from ops.cli_common import emit, settings, start_tracing

    start_tracing()  # the replay hops continue each dead letter's trace
    with errors():
        body = {
            "type": event_type,
            **filters.as_body(),
            "rate": rate,
            "dry_run": dry_run,
            "include_replayed": include_replayed,
            "max_replays": max_replays,
            "target": target,
        }
        request = dlq_service.replay_request(s := settings(), body)
        need_confirmation(yes, dry_run, "replay")
        data = _replay(s, request, yes=yes, dry_run=dry_run)
    emit(data, as_json, render_replay(data))
    if data["failed"]:
        raise typer.Exit(1)


def _replay(s: Any, request: Any, *, yes: bool, dry_run: bool) -> dict[str, Any]:
    """Sync the DLQ index, ask (unless --yes) with the count chosen, and replay."""
    from ops import dlq_service
    from ops.dlq_replay import who

    with engine_of(s) as engine:
        dlq_service.sync(s, engine, [request.event_type])

        def ask(chosen: Any) -> None:
            if not yes:
                n, t = len(chosen.to_send), chosen.event_type
                confirm(f"Replay {n} {t} record(s) to {chosen.target}?")

        with progress(0 if dry_run else 1, "replaying") as advance:
            data: dict[str, Any] = dlq_service.replay(
                s,
                engine,
                request,
                actor=who(),
                background=False,
                on_progress=advance,
                confirm=ask,
            )
    return data


@dlq_app.command()
@with_filters
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
    filters: FilterOptions = NO_FILTERS,
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
    from ops import dlq_service
    from ops.cli_common import emit, settings
    from ops.dlq_replay import who

    with errors():
        etype = resolve_type(event_type)
        chosen = filters.filters()
        need_confirmation(yes, dry_run, "purge")
        s = settings()
        with engine_of(s) as engine:
            data = dlq_service.purge(
                s,
                engine,
                etype,
                chosen,
                older_than_days=older_than_days,
                dry_run=dry_run,
                actor=who(),
                confirm=None if yes else confirm,
            )
    text = data.pop("text")
    emit(data, as_json, text)
