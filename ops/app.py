"""The application as it runs in production: the runtime plus what operates it.

    App(settings).start()   binds /metrics, starts every listener on its own thread, returns
    App(settings).run()     the same, in the foreground, until SIGTERM/SIGINT

The runtime (consumers/runtime.py) consumes; this adds the operator's side and wires the two:
Prometheus telemetry (ops/telemetry.py), the /metrics /healthz /readyz server (ops/http.py)
and housekeeping (ops/housekeeping.py). It lives in ops, the top layer, because it is the one
place that knows both.

Shutdown: the first signal stops fetching, lets in-flight work finish within
SHUTDOWN_TIMEOUT_S, commits and closes; a second signal exits at once.
"""

from __future__ import annotations

import gc
import os
import signal
import threading
import time
from types import FrameType

import structlog

from common.settings import ConfigError, Settings
from consumers.handlers.base import Handler
from consumers.runtime import Runtime
from ops.housekeeping import Housekeeping
from ops.http import HealthServer
from ops.telemetry import PrometheusTelemetry

log = structlog.get_logger(__name__)


class App(Runtime):
    def __init__(self, settings: Settings, handlers: dict[str, Handler] | None = None) -> None:
        super().__init__(settings, handlers, telemetry=PrometheusTelemetry())
        self.health: HealthServer | None = None
        self.housekeeping: Housekeeping | None = None

    # -- lifecycle --------------------------------------------------------------------------

    def bind(self) -> None:
        """Bind the metrics port before anything else starts (issue 17, defect 5): a taken
        port used to leave a consumer running without /metrics that ignored SIGTERM. Now it is
        a start-up error naming METRICS_PORT (exit 2)."""
        if self.health is not None:
            return
        s = self.settings
        try:
            self.health = HealthServer(s.metrics_host, s.metrics_port, self)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConfigError(
                f"METRICS_PORT: cannot listen on {s.metrics_host}:{s.metrics_port} ({reason})"
            ) from None

    def start(self) -> None:
        s = self.settings
        self.bind()
        assert self.health is not None
        self.health.start()  # /healthz answers during migrations; /readyz says not yet
        super().start()
        assert self.engine is not None
        self.housekeeping = Housekeeping(s, self.engine)
        self.housekeeping.start()
        log.info(
            "app_started",
            event_types=list(s.event_types),
            concurrency=s.concurrency,
            bootstrap=s.kafka_bootstrap_servers,
            metrics=f"http://{s.metrics_host}:{self.health.port}/metrics",
        )

    def stop(self, *, quiet: bool = False) -> None:
        super().stop()
        if self.housekeeping is not None:
            self.housekeeping.stop()
        if self.health is not None:
            self.health.stop()
        if self.engine is not None:
            self.engine.dispose()
        if not quiet:
            log.info("app_stopped")

    def run(self) -> int:
        """Run in the foreground until a signal; the exit code for the process."""
        stop = threading.Event()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if stop.is_set():
                log.warning("second_signal_exiting_now", signal=signum)
                os._exit(130)
            log.info("shutdown_requested", signal=signum)
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            self.start()
        except BaseException:
            # Whatever did start must not outlive a failed start-up; the caller prints the
            # one-line error, so no "app_stopped" line before it.
            self.stop(quiet=True)
            raise
        # What start-up made (modules, settings, clients, the app) lives until exit: moved to
        # the permanent generation, the collector stops walking it on every full collection.
        gc.freeze()
        while not stop.is_set() and not self.failed.is_set():
            time.sleep(0.2)
        self.stop()
        return 1 if self.failed.is_set() else 0
