"""What the `qchem-events dlq ...` commands share: their options, one declaration each, and the
plumbing around a command (errors to exit codes, an engine, confirmation, progress).

The six record filters (--error-class, --since, --until, --partition, --event-id, --limit)
are the same options on `list`, `replay` and `purge`: `with_filters` adds them to a command
and hands it one `FilterOptions`, so their names, help and checks are written once.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from ops.dlq import DlqProblem, DlqUsageError, Filters

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from common.settings import Settings

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
RateOpt = Annotated[str, typer.Option("--rate", metavar="N/s", help="Records per second.")]
IncludeReplayedFlag = Annotated[
    bool, typer.Option("--include-replayed", help="Send records replayed before again too.")
]
MaxReplaysOpt = Annotated[
    int,
    typer.Option(
        "--max-replays",
        min=1,
        max=1000,
        help="Never send a record replayed this often (its earlier replays included).",
    ),
]
TargetOpt = Annotated[
    str,
    typer.Option(
        "--target",
        help="main (default) or retry: the type's first retry tier, read only "
        "by this application's group.",
    ),
]
YesFlag = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
DryRunFlag = Annotated[
    bool, typer.Option("--dry-run", help="Print what would be done; change nothing.")
]


# -- the record filters ------------------------------------------------------------------------


@dataclass(frozen=True)
class FilterOptions:
    """The filter options as given on the command line (text, not yet checked), named as the
    fields of a replay request."""

    error_class: str | None = None
    since: str | None = None
    until: str | None = None
    partition: int | None = None
    event_id: list[str] | None = None
    limit: int | None = None

    def as_body(self) -> dict[str, Any]:
        """The fields of a replay or purge request (ops/dlq_args.py checks them)."""
        return {**asdict(self), "event_id": self.event_id or None}

    def filters(self) -> Filters:
        """The checked filters (a DlqUsageError on a bad time or an empty window)."""
        from ops.dlq_args import make_filters

        return make_filters(
            self.error_class, self.since, self.until, self.partition, self.event_id, self.limit
        )


NO_FILTERS = FilterOptions()

# Each filter option's declaration, in the order --help lists them.
FILTER_OPTIONS: dict[str, Any] = {
    "error_class": ErrorClassOpt,
    "since": SinceOpt,
    "until": UntilOpt,
    "partition": PartitionOpt,
    "event_id": EventIdOpt,
    "limit": LimitOpt,
}
F = TypeVar("F", bound=Callable[..., Any])


def with_filters(command: F) -> F:
    """Give `command` the six filter options in place of its `filters` parameter.

    typer reads a command's options from its signature, so the wrapper shows typer the
    command's signature with that one parameter spread into the six, and gathers them back.
    """
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.name != "filters":
            params.append(param)
            continue
        params += [
            inspect.Parameter(name, param.kind, default=None, annotation=annotation)
            for name, annotation in FILTER_OPTIONS.items()
        ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = FilterOptions(**{name: kwargs.pop(name) for name in FILTER_OPTIONS})
        return command(filters=given, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


# -- around every command ----------------------------------------------------------------------


@contextmanager
def errors() -> Iterator[None]:
    """A DlqUsageError exits 2, a DlqProblem 1, each as one line on stderr."""
    from ops.cli_common import fail

    try:
        yield
    except DlqUsageError as exc:
        fail(str(exc), 2)
    except DlqProblem as exc:
        fail(str(exc), 1)


@contextmanager
def engine_of(settings: Settings) -> Iterator[Engine]:
    from storage.db import make_engine

    engine = make_engine(settings, pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


def need_confirmation(yes: bool, dry_run: bool, what: str) -> None:
    if not yes and not dry_run and not sys.stdin.isatty():
        raise DlqUsageError(f"{what} needs confirmation but stdin is not a terminal; pass --yes")


def confirm(question: str) -> None:
    from ops.cli_common import fail

    if not typer.confirm(question, default=False, err=True):
        fail("cancelled: nothing changed", 1)


@contextmanager
def progress(total: int, label: str) -> Iterator[Callable[[int], None]]:
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
    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
