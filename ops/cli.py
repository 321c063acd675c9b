"""The `qchem-events` command line (typer).

Exit codes: 0 fine, 1 a problem found (a service unreachable, a check failing), 2 a usage or
configuration error. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer

from common import event_types
from common.settings import ConfigError, load_settings
from ops.cli_common import JsonFlag, command_line, emit, fail, settings, start_tracing

app = command_line(
    "qchem-events",
    "Reliable Kafka consumers for Q-Chem events, and the tools to operate them.",
    # typer's own completion: --install-completion / --show-completion (bash, zsh, fish, pwsh).
    completion=True,
)
topics_app = typer.Typer(
    help="Create and list the Kafka topics the application uses.", no_args_is_help=True
)
app.add_typer(topics_app, name="topics")
from ops import cli_dlq_review as _review  # noqa: E402,F401  (registers `dlq review`, `dlq history`)
from ops.cli_dlq import dlq_app  # noqa: E402

app.add_typer(dlq_app, name="dlq")
from ops.admin.cli import admin as _admin  # noqa: E402

app.command("admin")(_admin)
from ops.cli_schemas import schemas_app  # noqa: E402

app.add_typer(schemas_app, name="schemas")


class Problem(Exception):
    """A problem found (exit 1): the message is printed as one line."""


def _exit(message: str, code: int) -> NoReturn:
    """Outside typer's own handling (in `main`): print one line and exit."""
    typer.echo(f"qchem-events: {message}", err=True)
    sys.exit(code)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"qchem-events {version('qchem-events')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Reliable Kafka consumers for Q-Chem events, and the tools to operate them."""


@app.command()
def run() -> None:
    """Run the consumers in the foreground until Ctrl-C / SIGTERM.

    Example: KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 qchem-events run
    """
    from ops.app import App
    from ops.logging import configure
    from ops.topics import create_topics

    s = settings()
    configure(s.log_level, s.log_format, s.log_redact_fields)
    start_tracing()
    application = App(s)
    application.bind()  # a taken metrics port fails before Kafka or PostgreSQL is touched
    create_topics(s)
    raise typer.Exit(application.run())


@app.command()
def migrate() -> None:
    """Apply the database migrations (idempotent; `run` does it too).

    Example: DATABASE_URL=postgresql://qchem:qchem@127.0.0.1:5432/qchem qchem-events migrate
    """
    from storage.db import migrate as apply

    s = settings()
    apply(s.sqlalchemy_url)
    typer.echo("database schema is current")


@topics_app.command("create")
def topics_create(as_json: JsonFlag = False) -> None:
    """Create every topic (main, retry tiers, DLQ per event type); harmless when they exist.
    On topics that exist, sets retention (and the other settings-derived configuration) where
    the broker's value differs, and says what it changed.

    Example: qchem-events topics create --json
    """
    from ops.topics import as_dicts, create_topics, describe_change

    rows = create_topics(settings())
    text = "\n".join(
        f"{r.status:<8} {r.name} ({r.partitions} partitions){describe_change(r)}" for r in rows
    )
    emit(as_dicts(rows), as_json, text)


@topics_app.command("list")
def topics_list(as_json: JsonFlag = False) -> None:
    """List the application's topics with role, event type, partitions, retention (all from
    the broker), and any configuration that differs from the settings.

    Example: qchem-events topics list --json | jq '.[] | select(.role=="dlq")'
    """
    from ops.topics import as_dicts, describe_difference, list_topics

    rows = list_topics(settings())
    text = "\n".join(
        f"{r.role:<6} {r.event_type:<15} {r.partitions:>3}  {r.name}"
        + (f"  retention.ms={r.retention_ms}" if r.retention_ms is not None else "")
        + ("  (missing)" if r.status == "missing" else describe_difference(r))
        for r in rows
    )
    emit(as_dicts(rows), as_json, text)
    if any(r.status == "missing" for r in rows):
        raise typer.Exit(1)


@app.command()
def sample(
    event_type: Annotated[str, typer.Argument(help=f"One of {', '.join(event_types.names())}.")],
    count: Annotated[int, typer.Option("--count", "-n", min=1, max=1_000_000)] = 1,
    keys: Annotated[
        int | None, typer.Option(min=1, help="Limit the number of distinct keys.")
    ] = None,
    with_key: Annotated[
        bool, typer.Option("--with-key", help="Prefix each line with 'key|' for kcat -K'|'.")
    ] = False,
) -> None:
    """Print COUNT valid example events as JSON lines, ready for `kcat -P`.

    Example: qchem-events sample Email --count 10 | kcat -P -b 127.0.0.1:9092 -t qchem.email
    """
    if event_type not in event_types.registered():
        fail(f"unknown event type {event_type!r}; choose from {', '.join(event_types.names())}", 2)
    from schemas.codec import encode_json
    from schemas.samples import sample_events

    for event in sample_events(event_type, count, keys=keys):
        line = encode_json(event).decode()
        typer.echo(f"{event.key}|{line}" if with_key else line)


@app.command()
def stats(
    as_json: JsonFlag = False,
    all_groups: Annotated[
        bool,
        typer.Option(
            "--all-groups", help="Count every consumer group in the database, not TOPIC_PREFIX's."
        ),
    ] = False,
) -> None:
    """Counts by event type and status, success rate, attempts distribution, for the consumer
    groups of TOPIC_PREFIX.

    Example: qchem-events stats --json
    """
    from ops.stats import event_stats, render
    from storage.db import make_engine

    s = settings()
    engine = make_engine(s, pool_size=1)
    try:
        data = event_stats(engine, None if all_groups else s.topic_prefix)
    finally:
        engine.dispose()
    emit(data, as_json, render(data))


@app.command()
def health(as_json: JsonFlag = False) -> None:
    """Kafka, PostgreSQL, SMTP, the chemical API, breaker states, consumer lag per group.

    Exit code 1 when something is down. Example: qchem-events health --json
    """
    from ops.health import health as check
    from ops.health import render

    report = check(settings())
    emit(report, as_json, render(report))
    if not report["healthy"]:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point: one-line errors, exit codes 0 / 1 / 2."""
    run_cli(app)


def run_cli(typer_app: typer.Typer) -> None:
    """Run `typer_app` (this one, or devtools/cli.py's) with one-line errors and exit codes."""
    from sqlalchemy.exc import OperationalError

    from ops.cli_usage import invoke
    from ops.topics import KafkaUnavailable

    try:
        invoke(typer_app)  # usage errors: one line, exit 2 (ops/cli_usage.py)
    except ConfigError as exc:
        _exit(f"configuration error: {exc}", 2)
    except (KafkaUnavailable, Problem) as exc:
        _exit(str(exc), 1)
    except OperationalError as exc:
        from common.settings import redact_url
        from storage.db import describe_error

        # Never the driver's raw text: it quotes host names, which can hold a password.
        s = load_settings()
        _exit(
            f"cannot reach PostgreSQL at {redact_url(s.sqlalchemy_url)}: {describe_error(exc, s)}",
            1,
        )
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the last line of defence: one line, not a traceback
        from ops.logging import mask_secrets

        lines = mask_secrets(str(exc)).splitlines() or [""]
        _exit(f"{type(exc).__name__}: {lines[0][:300]}".rstrip(": "), 1)
