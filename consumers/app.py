"""The application: one listener per event type, sharing a producer, breakers and a pool.

    App(settings).start()   starts every listener on its own thread and returns
    App(settings).run()     the same, in the foreground, until SIGTERM/SIGINT

Shutdown: the first signal stops fetching, lets in-flight work finish within
SHUTDOWN_TIMEOUT_S, commits and closes; a second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

import structlog
from sqlalchemy.engine import Engine

from consumers.breakers import STATE_VALUES, Breakers
from consumers.dispatch import KeyedDispatcher
from consumers.handlers import build_handler
from consumers.handlers.base import Handler
from consumers.listener import Listener
from consumers.offsets import OffsetBook
from consumers.processing import Pipeline
from consumers.settings import ConfigError, Settings
from consumers.timers import Timers
from ops import metrics
from ops.housekeeping import Housekeeping
from ops.http import HealthServer
from retry_topics.dlq_monitor import DlqMonitor
from retry_topics.policy import RetryPolicy
from retry_topics.router import DeliveryProducer
from schemas.codec import SCHEMA_SOURCES
from schemas.registry import WriterSchemas
from storage.db import make_engine, migrate
from storage.secrets import replay_signing_key
from storage.writer import BatchWriter

log = structlog.get_logger(__name__)


class App:
    def __init__(self, settings: Settings, handlers: dict[str, Handler] | None = None) -> None:
        self.settings = settings
        self._handler_overrides = handlers or {}
        self.listeners: list[Listener] = []
        self.pipelines: dict[str, Pipeline] = {}
        self._threads: list[threading.Thread] = []
        self._writers: list[BatchWriter] = []
        self._dispatchers: list[KeyedDispatcher] = []
        self.engine: Engine | None = None
        self.replay_key: bytes | None = None  # signs and verifies replays (storage/secrets.py)
        self.producer: DeliveryProducer | None = None
        self.breakers = Breakers(
            fail_max=settings.breaker_fail_max,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            on_state_change=self._breaker_changed,
        )
        self.timers = Timers()
        self.health: HealthServer | None = None
        self.housekeeping: Housekeeping | None = None
        self.dlq_monitor: DlqMonitor | None = None
        self.failed = threading.Event()
        # Framed Avro's writer schemas, shared by every listener, behind their own breaker.
        self.writer_schemas: WriterSchemas | None = None
        if settings.schema_registry_url:
            self.writer_schemas = WriterSchemas.from_url(
                settings.schema_registry_url,
                dict(SCHEMA_SOURCES),
                timeout_s=settings.schema_registry_timeout_s,
                guard=self.breakers.get("schema_registry"),
            )
            metrics.BREAKER_STATE.labels("schema_registry").set(0)

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
        migrate(s.sqlalchemy_url)
        self.engine = make_engine(s)
        self.replay_key = replay_signing_key(self.engine)
        self.producer = DeliveryProducer(s.kafka_common_config())
        for event_type in s.event_types:
            self._start_listener(event_type)
        self.housekeeping = Housekeeping(s, self.engine, self)
        self.housekeeping.start()
        self.dlq_monitor = DlqMonitor(s, self.producer, self.breakers, self.engine)
        self.dlq_monitor.start()
        log.info(
            "app_started",
            event_types=list(s.event_types),
            concurrency=s.concurrency,
            bootstrap=s.kafka_bootstrap_servers,
            metrics=f"http://{s.metrics_host}:{self.health.port}/metrics",
        )

    def _start_listener(self, event_type: str) -> None:
        s = self.settings
        assert self.engine is not None and self.producer is not None
        names = s.topics(event_type)
        handler = self._handler_overrides.get(event_type) or build_handler(event_type, s)
        guard = self.breakers.get(handler.dependency) if handler.dependency else None
        if guard is not None:
            metrics.BREAKER_STATE.labels(guard.name).set(0)
            # The dependency's own health check: probing with no traffic (the DLQ monitor).
            guard.probe = guard.probe or getattr(handler, "probe", None)
        dispatcher = KeyedDispatcher(
            s.concurrency, name=f"{names.group}-worker", on_crash=self._worker_crashed
        )
        writer = BatchWriter(
            self.engine,
            writers=s.db_writers_per_listener,
            batch_max=s.write_batch_max,
            name=f"{names.group}-writer",
            on_batch=lambda n, _t: metrics.WRITE_BATCH_SIZE.observe(n),
            on_database=lambda down, held: self.pipelines[event_type].database_unavailable(
                down, held
            ),
        )
        pipeline = Pipeline(
            event_type=event_type,
            names=names,
            handler=handler,
            policy=RetryPolicy(retries=s.retries_for(event_type)),
            writer=writer,
            producer=self.producer,
            book=OffsetBook(),
            dispatcher=dispatcher,
            timers=self.timers,
            guard=guard,
            payload_log_bytes=s.log_payload_max_bytes,
            redact_fields=s.log_redact_fields,
        )
        listener = Listener(
            names=names,
            pipeline=pipeline,
            kafka_config=s.kafka_common_config(),
            group_protocol=s.kafka_group_protocol,
            max_in_flight=s.max_in_flight,
            commit_interval_s=s.commit_interval_s,
            max_event_bytes=s.max_event_bytes,
            shutdown_timeout_s=s.shutdown_timeout_s,
            writer_schemas=self.writer_schemas,
            replay_key=self.replay_key,
        )
        thread = threading.Thread(
            target=self._run_listener, args=(listener,), name=f"listener-{event_type}"
        )
        self.pipelines[event_type] = pipeline
        self.listeners.append(listener)
        self._writers.append(writer)
        self._dispatchers.append(dispatcher)
        self._threads.append(thread)
        thread.start()

    def _run_listener(self, listener: Listener) -> None:
        try:
            listener.run()
        except Exception:
            log.exception("listener_crashed", event_type=listener.event_type)
            self.failed.set()

    def stop(self, *, quiet: bool = False) -> None:
        if self.dlq_monitor is not None:
            self.dlq_monitor.stop()
        for listener in self.listeners:
            listener.stop()
        for thread in self._threads:
            thread.join(timeout=self.settings.shutdown_timeout_s + 15)
        if self.producer is not None:
            self.producer.close()
        for dispatcher in self._dispatchers:
            dispatcher.shutdown(wait=False)
        for writer in self._writers:
            writer.close()
        self.timers.stop()
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
        while not stop.is_set() and not self.failed.is_set():
            time.sleep(0.2)
        self.stop()
        return 1 if self.failed.is_set() else 0

    # -- callbacks --------------------------------------------------------------------------

    def _worker_crashed(self, exc: BaseException) -> None:
        log.error("worker_job_crashed", error=repr(exc))

    @staticmethod
    def _breaker_changed(name: str, state: str) -> None:
        metrics.BREAKER_STATE.labels(name).set(STATE_VALUES.get(state, 0))
        log.warning("breaker_state_changed", dependency=name, state=state)

    def ready(self) -> bool:
        return bool(self.listeners) and all(lst.joined() for lst in self.listeners)
