"""When the writer may call a handler's `apply_batch` instead of `apply` (issue 13): never
past a subclass's own `apply` (a fault-injecting test handler, a check added by a subclass),
never for a handler with an outside effect."""

from __future__ import annotations

from typing import Any, ClassVar

from sqlalchemy.engine import Connection

from common.settings import load_settings
from consumers.handlers import ChemicalStatusHandler, ReportHandler
from consumers.handlers.base import set_based_apply
from schemas.events import Event

SETTINGS = load_settings(kafka_bootstrap_servers="127.0.0.1:9", database_url="postgresql://x@y/z")


class OverridesApply(ChemicalStatusHandler):
    def apply(self, conn: Connection, event: Event, performed: Any) -> None:
        super().apply(conn, event, performed)


class OverridesBoth(OverridesApply):
    def apply_batch(self, conn: Connection, events: list[Event]) -> None:
        super().apply_batch(conn, events)


class PerformsOutside(ChemicalStatusHandler):
    dependency: ClassVar[str | None] = "smtp"

    def perform(self, event: Event) -> Any:
        return "sent"


def test_the_built_in_database_only_handlers_are_set_based() -> None:
    for handler_type in (ChemicalStatusHandler, ReportHandler):
        handler = handler_type(SETTINGS)
        assert set_based_apply(handler) == handler.apply_batch


def test_an_apply_overridden_below_apply_batch_is_not_bypassed() -> None:
    assert set_based_apply(OverridesApply(SETTINGS)) is None
    both = OverridesBoth(SETTINGS)
    assert set_based_apply(both) == both.apply_batch


def test_a_handler_with_an_outside_effect_is_never_set_based() -> None:
    assert set_based_apply(PerformsOutside(SETTINGS)) is None
