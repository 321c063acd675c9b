"""`qchem-events dlq review ...` and `dlq history`: manual review and the audit trail.

The same service as the admin API (ops/dlq_service.py, ops/dlq_review.py); the actor is the
operating-system user running the command.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ops.cli_common import JsonFlag
from ops.cli_dlq import dlq_app
from ops.cli_dlq_options import (
    TypeOpt,
    YesFlag,
    confirm,
    engine_of,
    errors,
    need_confirmation,
)
from ops.dlq_render import render_history
from schemas.safe_text import escape_controls

review_app = typer.Typer(
    help="Business-critical dead letters (CRITICAL_TYPES): list, approve (replays once), reject.",
    no_args_is_help=True,
)
dlq_app.add_typer(review_app, name="review")

RefArg = Annotated[
    str, typer.Argument(metavar="TYPE:PARTITION:OFFSET", help="e.g. ChemicalStatus:0:7")
]
ReasonOpt = Annotated[
    str | None, typer.Option("--reason", help="Why (kept with the review and in the audit trail).")
]
STATES = ("pending", "approved", "rejected", "replayed")


@review_app.command("list")
def review_list(
    event_type: TypeOpt = None,
    state: Annotated[
        str, typer.Option("--state", help="pending (default), approved, rejected or replayed.")
    ] = "pending",
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    as_json: JsonFlag = False,
) -> None:
    """The review queue: critical dead letters in a review state, oldest first.

    Example: qchem-events dlq review list --type ChemicalStatus
    """
    from ops import dlq_service
    from ops.cli_common import emit, settings
    from ops.dlq import DlqUsageError
    from ops.dlq_query import Query

    with errors():
        if state not in STATES:
            raise DlqUsageError(f"--state: expected one of {', '.join(STATES)}, got {state!r}")
        s = settings()
        types = tuple(t for t in dlq_service.types_of(s, event_type) if t in s.critical_types)
        if not types:
            raise DlqUsageError("no business-critical type selected (CRITICAL_TYPES)")
        with engine_of(s) as engine:
            dlq_service.sync(s, engine, types)
            data = dlq_service.records(s, engine, Query(types, status=state), limit)
    lines = [
        f"{r['ref']}  {r['dead_lettered_at']}  {r['status']}  {r['error_class']}  "
        f"event={r['event_id']}" + (f"  by {r['review']['actor']}" if r["review"] else "")
        for r in data["records"]
    ]
    emit(data, as_json, escape_controls("\n".join([*lines, f"{len(lines)} records"])))


@review_app.command()
def approve(
    ref: RefArg,
    reason: ReasonOpt = None,
    target: Annotated[str, typer.Option("--target", help="main (default) or retry.")] = "main",
    yes: YesFlag = False,
    as_json: JsonFlag = False,
) -> None:
    """Approve a pending critical dead letter: it is replayed once, now (asks unless --yes).

    Example: qchem-events dlq review approve ChemicalStatus:0:7 --reason "fixed CAS" --yes
    """
    from ops import dlq_service
    from ops.cli_common import emit, fail, settings
    from ops.dlq_replay import who

    with errors():
        s = settings()
        need_confirmation(yes, False, "approve")
        if not yes:
            confirm(f"Approve and replay {ref}?")
        with engine_of(s) as engine:
            dlq_service.sync(s, engine, [dlq_service.parse_ref(ref)[0]])
            try:
                data = dlq_service.approve(
                    s, engine, ref, actor=who(), reason=reason, target=target
                )
            except dlq_service.Conflict as exc:
                fail(str(exc), 1)
    emit(data, as_json, f"{data['ref']}: {data['state']} (job {data['job']})")
    if data["state"] != "replayed":
        raise typer.Exit(1)


@review_app.command()
def reject(ref: RefArg, reason: ReasonOpt = None, as_json: JsonFlag = False) -> None:
    """Reject a pending critical dead letter: it stays in the DLQ, never replayed.

    Example: qchem-events dlq review reject ChemicalStatus:0:7 --reason "superseded"
    """
    from ops import dlq_service
    from ops.cli_common import emit, settings
    from ops.dlq_replay import who

    with errors():
        s = settings()
        with engine_of(s) as engine:
            dlq_service.sync(s, engine, [dlq_service.parse_ref(ref)[0]])
            data = dlq_service.reject(s, engine, ref, actor=who(), reason=reason)
    emit(data, as_json, escape_controls(f"{data['ref']}: rejected ({data['reason']})"))


@dlq_app.command()
def history(
    ref: Annotated[
        str | None, typer.Option("--ref", help="Only the audit rows of this record.")
    ] = None,
    jobs: Annotated[
        bool, typer.Option("--jobs", help="Replay jobs instead of audit rows.")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """The audit trail: who approved, rejected, replayed or purged what, and when; --jobs
    lists replay jobs with their filter and progress.

    Example: qchem-events dlq history --ref ChemicalStatus:0:7
    """
    from ops import dlq_service
    from ops.cli_common import emit, settings

    with errors():
        if ref is not None:
            dlq_service.parse_ref(ref)
        s = settings()
        with engine_of(s) as engine:
            rows = (
                dlq_service.jobs(engine, limit) if jobs else dlq_service.history(engine, ref, limit)
            )
    emit(rows, as_json, render_history(rows))
