"""`qchem-events admin`: serve the admin API and page (registered in ops/cli.py)."""

from __future__ import annotations

import signal
from typing import Any

import typer


def admin() -> None:
    """Serve the admin API (/api/v1/) and page (/admin) until Ctrl-C / SIGTERM.

    Binds ADMIN_HOST:ADMIN_PORT (127.0.0.1:9410). Mutations (approve, reject, replay, purge)
    need ADMIN_TOKEN; without it the page and API are read-only.

    Example: ADMIN_TOKEN=$(openssl rand -hex 32) qchem-events admin
    """
    from sqlalchemy import exc as sa_exc
    from sqlalchemy import select

    from ops.admin.config import AdminConfigError, load_admin_settings
    from ops.admin.run import AdminServer
    from ops.cli_common import fail, settings, start_tracing
    from ops.logging import configure
    from storage.dlq_index import dlq_entries

    s = settings()
    configure(s.log_level, s.log_format, s.log_redact_fields)
    start_tracing()  # replay jobs continue each dead letter's trace
    try:
        config = load_admin_settings()
    except AdminConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    try:
        server = AdminServer(s, config)
    except OSError as exc:
        fail(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}", 2)
    try:
        with server.engine.connect() as conn:
            conn.execute(select(dlq_entries.c.dlq_offset).limit(0))
    except sa_exc.ProgrammingError:
        server.stop()
        fail("the DLQ index table is missing: run `qchem-events migrate`", 1)

    def stop(_signum: int, _frame: Any) -> None:
        server._stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.start()
    typer.echo(f"admin page on {server.url}/admin", err=True)
    server.wait()
    server.stop()
