"""`python -m devtools`: the development servers and the production scenarios (typer).

Run from a source checkout (`make setup`, the `[dev]` extra). Not `qchem-events` sub-commands
any more: the wheel and the container image carry only what an operator runs, and a command
there that needs files the wheel leaves out would only fail. Exit codes as `qchem-events`: 0
fine, 1 a promise that did not hold, 2 a usage error.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

import typer

from devtools.devservers import ChemicalApiServer, ReceivedEmail, SmtpSink
from ops.cli_common import JsonFlag, command_line, fail, settings

app = command_line(
    "python -m devtools",
    "Development aids: local stand-ins for the dependencies, the production scenarios.",
    completion=False,
)
Port = Annotated[int, typer.Option(min=1, max=65535)]


@app.command()
def scenario(
    name: Annotated[
        str,
        typer.Argument(
            help="chemical-cascade, email-outage, db-pool-exhaustion, malformed, "
            "dependency-failure, or all (the five in order)."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Reproduce a production scenario of the design document with real faults; print its
    dashboard. Exit code 1 when the document's promised result does not hold.

    Example: python -m devtools scenario email-outage
    """
    from devtools.scenarios import run_and_print, selected

    try:
        selected(name)
    except ValueError as exc:
        fail(str(exc), 2)
    if not run_and_print(name, settings(), as_json=as_json, echo=typer.echo):
        raise typer.Exit(1)


@app.command("smtp")
def smtp(port: Port = 2525) -> None:
    """A local SMTP server that prints each email it receives (Ctrl-C stops it).

    Example: python -m devtools smtp --port 2525
    """
    sink = SmtpSink(port=port, on_message=_print_email)
    _serve(sink, lambda: f"SMTP sink listening on {sink.host}:{sink.port}")


@app.command("chemical-api")
def chemical_api(port: Port = 8081) -> None:
    """A local chemical database API (GET /chemicals/{id}) for the ChemicalLookup handler.

    Example: python -m devtools chemical-api --port 8081
    """
    api = ChemicalApiServer(port=port, on_request=_print_request)
    _serve(api, lambda: f"chemical API listening on {api.url}")


def _serve(server: SmtpSink | ChemicalApiServer, listening: Callable[[], str]) -> None:
    """Start `server`, say where it listens, serve until Ctrl-C, stop it."""
    server.start()
    try:
        typer.echo(f"{listening()} (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    finally:
        server.stop()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _print_email(message: ReceivedEmail) -> None:
    print(
        f"{_now()} MAIL from={message.mail_from} to={','.join(message.to)} "
        f"message_id={message.message_id} x_event_id={message.event_id} "
        f"subject={message.subject!r}",
        flush=True,
    )


def _print_request(method: str, path: str, status: int, event_id: str | None) -> None:
    print(f"{_now()} {method} {path} -> {status} x_event_id={event_id}", flush=True)


def main() -> None:
    """One-line errors and exit codes as `qchem-events` (ops/cli_usage.py, ops/cli.py)."""
    from ops.cli import run_cli

    run_cli(app)
