"""Run the application in the test process, or as a real child process to kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from common.settings import Settings
from consumers.handlers.base import Handler
from devtools import harness
from devtools.ports import free_port
from ops.app import App
from ops.topics import create_topics

CLI = str(Path(sys.executable).parent / "qchem-events")


@contextmanager
def running_app(
    settings: Settings, handlers: dict[str, Handler] | None = None, *, partitions: bool = False
) -> Iterator[App]:
    """The settings' topics created, then the app run in this process (devtools/harness.py);
    with `partitions`, not only joined but holding partitions."""
    create_topics(settings)
    with harness.running_app(settings, handlers, partitions=partitions) as app:
        yield app


def settings_env(settings: Settings) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url.get_secret_value(),
        "TOPIC_PREFIX": settings.topic_prefix,
        "TOPIC_PARTITIONS": str(settings.topic_partitions),
        "SMTP_HOST": settings.smtp_host,
        "SMTP_PORT": str(settings.smtp_port),
        "CHEMICAL_API_URL": settings.chemical_api_url,
        "EVENT_TYPES": ",".join(settings.event_types),
        "METRICS_PORT": str(free_port()),
        "COMMIT_INTERVAL_S": str(settings.commit_interval_s),
    }
    return env


class AppProcess:
    """`qchem-events run` as a child process: started, killed, restarted by the test."""

    def __init__(self, settings: Settings, log_path: Path, **extra_env: str) -> None:
        self.env = {**os.environ, **settings_env(settings), **extra_env}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CLI, "run"], env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.starts += 1

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# What an application's log shows when one of its threads died: a test of app processes
# checks each log, since a crashed listener may still exit 0.
CRASH_MARKERS = ("listener_crashed", "worker_job_crashed", "Traceback")


def assert_no_crash(apps: Iterable[AppProcess]) -> None:
    for app in apps:
        crashes = [m for m in CRASH_MARKERS if m in app.log()]
        assert not crashes, f"{app.log_path.name}: {crashes}\n{app.log_tail()}"


def kill_alive(apps: Iterable[AppProcess]) -> None:
    """Kill the processes a test left running (it failed half-way): none outlives it."""
    for app in apps:
        if app.alive():
            app.kill()
