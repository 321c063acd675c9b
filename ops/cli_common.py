"""What every `qchem-events` sub-command shares: the one-line failure, the settings, output.

Its own module so that the sub-command modules (cli_dlq.py, cli_schemas.py, admin/cli.py)
need not import ops/cli.py, which imports them to register their commands.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer

import schemas  # noqa: F401  (registers the built-in event types the settings name)
from common.settings import ConfigError, Settings, load_settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def command_line(name: str, help: str, *, completion: bool) -> typer.Typer:
    """A top-level command line as ours all are (`qchem-events`, `python -m devtools`): no
    arguments print the help, and an error is one line on stderr (`fail`), never typer's
    pretty traceback."""
    return typer.Typer(
        name=name,
        help=help,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=completion,
    )


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"qchem-events: {message}", err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)


def start_tracing() -> None:
    """OpenTelemetry as the OTEL_* variables say (README "Tracing"; off by default)."""
    from common import tracing

    try:
        tracing.configure_from_env()
    except tracing.TracingConfigError as exc:
        fail(f"configuration error: {exc}", 2)


def emit(data: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)
