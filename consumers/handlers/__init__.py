"""The handler of each event type, and the one place that maps a type to its class."""

from __future__ import annotations

from collections.abc import Callable

from common.settings import Settings
from consumers.handlers.base import Handler
from consumers.handlers.chemical_lookup import ChemicalLookupHandler
from consumers.handlers.chemical_status import ChemicalStatusHandler
from consumers.handlers.email import EmailHandler
from consumers.handlers.report import ReportHandler

HANDLER_TYPES: dict[str, type] = {
    ChemicalStatusHandler.event_type: ChemicalStatusHandler,
    EmailHandler.event_type: EmailHandler,
    ReportHandler.event_type: ReportHandler,
    ChemicalLookupHandler.event_type: ChemicalLookupHandler,
}

# Not used at run time: typed this way, mypy checks every class against the Handler protocol
# (a `dict[str, type]` alone would accept any class).
_CONFORMING: tuple[Callable[[Settings], Handler], ...] = (
    ChemicalStatusHandler,
    EmailHandler,
    ReportHandler,
    ChemicalLookupHandler,
)


def build_handler(event_type: str, settings: Settings) -> Handler:
    """A new handler for `event_type`; ValueError naming the known types otherwise."""
    try:
        handler_class = HANDLER_TYPES[event_type]
    except KeyError:
        raise ValueError(
            f"no handler for event type {event_type!r}; known: {sorted(HANDLER_TYPES)}"
        ) from None
    handler: Handler = handler_class(settings)
    return handler


__all__ = [
    "HANDLER_TYPES",
    "ChemicalLookupHandler",
    "ChemicalStatusHandler",
    "EmailHandler",
    "ReportHandler",
    "build_handler",
]
