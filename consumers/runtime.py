"""The runtime: one listener per event type, sharing a producer, breakers and a pool.

    Runtime(settings, telemetry=...).start()   starts every listener on its own thread
    Runtime(...).stop()                        stops fetching, finishes, commits, closes

It is what consumes, with nothing of operations in it: the HTTP server, housekeeping, the
Prometheus metrics and the process's signals are added by the application that assembles
it (ops/app.py). What it reports goes through the `Telemetry` it is given
(common/telemetry.py).
"""

from __future__ import annotations

import threading
from functools import partial

import structlog
from sqlalchemy.engine import Engine

from common.settings import Settings
from common.telemetry import NULL_TELEMETRY, Telemetry
from consumers.breakers import Breakers, DependencyGuard
from consumers.dispatch import KeyedDispatcher
from consumers.dlq_monitor import DlqMonitor
from consumers.handlers import build_handler
from consumers.handlers.base import Handler
from consumers.intake import Intake
from consumers.listener import Listener
from consumers.offsets import OffsetBook
from consumers.processing import Pipeline
from consumers.timers import Timers
from retry_topics import policy
from retry_topics.hold import Hold
from retry_topics.naming import topic_names
from retry_topics.policy import RetryPolicy
from retry_topics.router import DeliveryProducer
from schemas.codec import SCHEMA_SOURCES
from schemas.registry import WriterSchemas
from storage.db import database_answers, make_engine, migrate
from storage.secrets import replay_signing_key
from storage.writer import BatchWriter

log = structlog.get_logger(__name__)


class Runtime:
    def __init__(
        self,
        settings: Settings,
        handlers: dict[str, Handler] | None = None,
        telemetry: Telemetry = NULL_TELEMETRY,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self._handler_overrides = handlers or {}
        self.listeners: list[Listener] = []
        self.pipelines: dict[str, Pipeline] = {}
        self._threads: list[threading.Thread] = []
        self._writers: list[BatchWriter] = []
        self._dispatchers: list[KeyedDispatcher] = []
        self._handlers: list[Handler] = []
        self.engine: Engine | None = None
        self.replay_key: bytes | None = None  # signs and verifies replays (storage/secrets.py)
        self.producer: DeliveryProducer | None = None
        self.breakers = Breakers(
            fail_max=settings.breaker_fail_max,
            reset_timeout_s=settings.breaker_reset_timeout_s,
            on_state_change=self._breaker_changed,
        )
        self.timers = Timers()
        self.dlq_monitor: DlqMonitor | None = None
        self.failed = threading.Event()
        # Each type's schema read and compiled now: a broken one stops start-up, not a record.
        sources = {event_type: SCHEMA_SOURCES[event_type] for event_type in settings.event_types}
        # Framed Avro's writer schemas, shared by every listener, behind their own breaker.
        self.writer_schemas: WriterSchemas | None = None
        if settings.schema_registry_url:
            self.writer_schemas = WriterSchemas.from_url(
                settings.schema_registry_url,
                sources,
                timeout_s=settings.schema_registry_timeout_s,
                guard=self.breakers.get("schema_registry"),
            )
            telemetry.breaker_state("schema_registry", "closed")

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        migrate(s.sqlalchemy_url)
        self.engine = make_engine(s)
        self.replay_key = replay_signing_key(self.engine)
        self.producer = DeliveryProducer(s.kafka_common_config())
        for event_type in s.event_types:
            self._start_listener(event_type)
        self.dlq_monitor = DlqMonitor(
            s, self.producer, self.breakers, self.engine, telemetry=self.telemetry
        )
        self.dlq_monitor.start()

    def _start_listener(self, event_type: str) -> None:
        s = self.settings
        assert self.engine is not None and self.producer is not None
        names = topic_names(s, event_type)
        telemetry = self.telemetry.for_event_type(event_type)
        handler = self._handler_overrides.get(event_type) or build_handler(event_type, s)
        guard = self._guard(handler)
        dispatcher = KeyedDispatcher(
            s.concurrency, name=f"{names.group}-worker", on_crash=self._worker_crashed
        )
        # One hold for the writer and the pipeline: the backoff and the database's down mark.
        probe = partial(database_answers, self.engine)
        hold = Hold(self.timers, probe=probe, names=names, telemetry=telemetry)
        writer = self._writer(names.group, hold)
        book = OffsetBook()  # the pipeline marks what is done, the listener commits it
        pipeline = Pipeline(
            event_type=event_type,
            names=names,
            handler=handler,
            policy=RetryPolicy(retries=s.retries_for(event_type)),
            writer=writer,
            producer=self.producer,
            book=book,
            dispatcher=dispatcher,
            timers=self.timers,
            hold=hold,
            guard=guard,
            payload_log_bytes=s.log_payload_max_bytes,
            redact_fields=s.log_redact_fields,
            telemetry=telemetry,
        )
        intake = Intake(
            names=names,
            max_event_bytes=s.max_event_bytes,
            max_attempt=pipeline.max_attempt,
            writer_schemas=self.writer_schemas,
            replay_key=self.replay_key,
            telemetry=telemetry,
        )
        listener = Listener(
            intake=intake,
            pipeline=pipeline,
            book=book,
            kafka_config=s.kafka_common_config(),
            group_protocol=s.kafka_group_protocol,
            max_in_flight=s.max_in_flight,
            commit_interval_s=s.commit_interval_s,
            shutdown_timeout_s=s.shutdown_timeout_s,
        )
        thread = threading.Thread(
            target=self._run_listener, args=(listener,), name=f"listener-{event_type}"
        )
        self.pipelines[event_type] = pipeline
        self.listeners.append(listener)
        self._writers.append(writer)
        self._dispatchers.append(dispatcher)
        self._handlers.append(handler)
        self._threads.append(thread)
        thread.start()

    def _guard(self, handler: Handler) -> DependencyGuard | None:
        """The breaker of the handler's dependency, if it has one."""
        if not handler.dependency:
            return None
        guard = self.breakers.get(handler.dependency)
        self.telemetry.breaker_state(guard.name, "closed")
        # The dependency's own health check: probing with no traffic (the DLQ monitor).
        guard.probe = guard.probe or getattr(handler, "probe", None)
        return guard

    def _writer(self, group: str, hold: Hold) -> BatchWriter:
        assert self.engine is not None
        s = self.settings
        return BatchWriter(
            self.engine,
            writers=s.db_writers_per_listener,
            batch_max=s.write_batch_max,
            name=f"{group}-writer",
            on_batch=lambda n, _t: self.telemetry.write_batch(n),
            # The failure path's rules, given here: storage sits below retry_topics.
            is_database_down=policy.database_down,
            hold_delay_s=hold.delay_s,
            on_database=hold.writes_held,
        )

    def _run_listener(self, listener: Listener) -> None:
        try:
            listener.run()
        except Exception:
            log.exception("listener_crashed", event_type=listener.event_type)
            self.failed.set()

    def stop(self) -> None:
        """Stop the DLQ monitor and the listeners (each finishes and commits within
        SHUTDOWN_TIMEOUT_S), then the producer, workers, handlers (their `close`, when they
        have one), writers and timers. The engine stays open for whoever assembled the
        runtime (ops/app.py closes it last)."""
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
        for handler in self._handlers:
            self._close_handler(handler)
        for writer in self._writers:
            writer.close()
        self.timers.stop()

    def _close_handler(self, handler: Handler) -> None:
        """The handler's optional `close` (e.g. the Email handler's pooled connections); a
        failing one is logged, not allowed to stop the rest of the shutdown."""
        close = getattr(handler, "close", None)
        if not callable(close):
            return
        try:
            close()
        except Exception:
            log.exception("handler_close_failed", event_type=handler.event_type)

    # -- callbacks --------------------------------------------------------------------------

    def _worker_crashed(self, exc: BaseException) -> None:
        log.error("worker_job_crashed", error=repr(exc))

    def _breaker_changed(self, name: str, state: str) -> None:
        self.telemetry.breaker_state(name, state)
        log.warning("breaker_state_changed", dependency=name, state=state)

    def ready(self) -> bool:
        return bool(self.listeners) and all(lst.joined() for lst in self.listeners)
