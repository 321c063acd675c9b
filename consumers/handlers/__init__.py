"""The handler of each event type: one `register_handler` each (README "Add an event type").

A handler class names its event type (`event_type`), which must be registered already
(common/event_types.py; the built-in ones in schemas/catalog.py): its events are decoded and
checked before any handler sees them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from common import event_types
from common.settings import Settings
from consumers.handlers.base import Handler
from consumers.handlers.chemical_lookup import ChemicalLookupHandler
from consumers.handlers.chemical_status import ChemicalStatusHandler
from consumers.handlers.email import EmailHandler
from consumers.handlers.report import ReportHandler

# What a handler class is: built from the settings, it is a `Handler` (mypy checks each
# registration against the protocol); `event_type` and `dependency` are read from the class.
HandlerClass = Callable[[Settings], Handler]

_lock = threading.Lock()
_handlers: dict[str, Any] = {}
HANDLER_TYPES: Mapping[str, Any] = MappingProxyType(_handlers)
"""The handler class of each event type that has one (read-only, live)."""


def register_handler(handler_class: HandlerClass) -> HandlerClass:
    """Make `handler_class` the handler of its `event_type`; usable as a class decorator.

    ValueError when the event type is not registered, or has another handler already."""
    event_type: str = getattr(handler_class, "event_type", "")
    if event_types.get(event_type) is None:
        raise ValueError(
            f"{getattr(handler_class, '__name__', handler_class)}: event type {event_type!r} "
            f"is not registered; known: {list(event_types.registered())}"
        )
    with _lock:
        known = _handlers.get(event_type)
        if known is not None and known is not handler_class:
            raise ValueError(f"event type {event_type!r} has a handler already: {known.__name__}")
        _handlers[event_type] = handler_class
    return handler_class


def unregister_handler(event_type: str) -> None:
    """Forget the handler of `event_type` (tests that register a type of their own)."""
    with _lock:
        _handlers.pop(event_type, None)


def handler_class(event_type: str) -> Any:
    """The registered handler class of `event_type`; ValueError naming the known types."""
    try:
        return _handlers[event_type]
    except KeyError:
        raise ValueError(
            f"no handler for event type {event_type!r}; known: {sorted(_handlers)}"
        ) from None


def build_handler(event_type: str, settings: Settings) -> Handler:
    """A new handler for `event_type`; ValueError naming the known types otherwise."""
    handler: Handler = handler_class(event_type)(settings)
    return handler


# Typed as HandlerClass, so mypy checks each class against the Handler protocol.
_BUILT_IN: tuple[HandlerClass, ...] = (
    ChemicalStatusHandler,
    EmailHandler,
    ReportHandler,
    ChemicalLookupHandler,
)
for _built_in in _BUILT_IN:
    register_handler(_built_in)


__all__ = [
    "HANDLER_TYPES",
    "ChemicalLookupHandler",
    "ChemicalStatusHandler",
    "EmailHandler",
    "HandlerClass",
    "ReportHandler",
    "build_handler",
    "handler_class",
    "register_handler",
    "unregister_handler",
]
