"""The /metrics /healthz /readyz server under hostile clients, and a taken port (issue 17: 5, 6).

Against the real server of a running application (real Kafka and PostgreSQL), and the real
`qchem-events run` process for the taken port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import pytest

from common.settings import Settings
from ops.topics import admin_client, existing_topics
from tests.support.app import CLI, running_app, settings_env

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 200
READYZ_BOUND_S = 2.0  # far under Prometheus' 10 s scrape timeout


def get(url: str, timeout: float = 15) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            response.read()
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:  # 503 is an answer too
        return exc.code, dict(exc.headers)


@contextmanager
def serving(settings: Settings) -> Iterator[int]:
    """The app, for one event type, running in this process: the port of its HTTP server."""
    with running_app(settings.model_copy(update={"event_types": ("Report",)})) as app:
        assert app.health is not None
        yield app.health.port


def slow_header_clients(stack: ExitStack, port: int, n: int) -> list[socket.socket]:
    """n connections that start a request and never finish its headers (slowloris)."""
    clients = []
    for _ in range(n):
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=30))
        sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        clients.append(sock)
    return clients


def test_slow_header_clients_hold_no_threads_and_do_not_delay_readyz(
    settings: Settings,
) -> None:
    with serving(settings) as port, ExitStack() as stack:
        base = f"http://127.0.0.1:{port}"
        assert get(f"{base}/readyz")[0] == 200
        threads_before = threading.active_count()
        latencies: list[float] = []

        def readyz() -> int:
            started = time.monotonic()
            status = get(f"{base}/readyz")[0]
            latencies.append(time.monotonic() - started)
            return status

        with ThreadPoolExecutor(4) as pool:
            probes = [pool.submit(readyz) for _ in range(40)]
            slow_header_clients(stack, port, SLOW_CLIENTS)  # opened while the probes run
            probes += [pool.submit(readyz) for _ in range(40)]
            statuses = [probe.result(timeout=120) for probe in probes]
        grown = threading.active_count() - threads_before
        assert statuses == [200] * len(statuses)
        assert max(latencies) < READYZ_BOUND_S, sorted(latencies)[-5:]
        # A bounded pool: 200 stalled clients are not 200 threads (the old server: +200).
        assert grown < 20, f"{grown} more threads with {SLOW_CLIENTS} slow clients"


def test_a_stalled_request_is_closed_and_the_server_names_no_python_version(
    settings: Settings,
) -> None:
    with serving(settings) as port, ExitStack() as stack:
        status, headers = get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200
        assert "Python" not in headers.get("Server", "") and headers["Server"] == "qchem-events"
        # The listen backlog is a real one (the old server's was 5): ss shows it as Send-Q.
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True
        ).stdout.split()
        assert int(listening[2]) >= 128, listening
        (stalled,) = slow_header_clients(stack, port, 1)
        started = time.monotonic()
        stalled.settimeout(30)
        try:
            while stalled.recv(1024):  # an error answer, or none, then the close
                pass
        except TimeoutError:
            pytest.fail("the server kept a stalled request open for 30 s")
        assert time.monotonic() - started < 12, "the server kept a stalled request open"


def test_a_taken_metrics_port_stops_start_up_with_one_line_and_exit_2(
    settings: Settings,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        env = {**os.environ, **settings_env(settings), "METRICS_PORT": str(port)}
        process = subprocess.Popen(
            [CLI, "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"still running 30 s after failing to bind :{port}: {stderr[-500:]}")
    assert process.returncode == 2, stderr
    assert stderr.count("\n") == 1 and stdout == "", stderr
    assert f"METRICS_PORT: cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr
    # Bound first: nothing was created before the port was found taken.
    topics = existing_topics(admin_client(settings), settings)
    assert not [t for t in topics if t.startswith(f"{settings.topic_prefix}.")]
