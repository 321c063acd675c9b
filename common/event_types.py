"""The event types the application knows: one `register(EventType(...))` each.

An event type is its Avro schema, its payload dataclass and its handler. This registry holds
the first two, and the per-type defaults of the settings, so that every list keyed by event
type derives from it: `EVENT_TYPES` and its defaults (`common/settings.py`), the codec's
schemas and checkers (`schemas/codec.py`), the samples, the topics, the CLI's choices. It
lives in `common/`, the leaf, because the settings validate `EVENT_TYPES` against it; it only
holds the objects it is given, so it imports nothing above itself. The built-in types are
registered by `schemas/catalog.py` (imported with the `schemas` package); their handlers by
`consumers/handlers/__init__.py`. README "Add an event type" lists the steps.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from random import Random
from types import MappingProxyType
from typing import Any

__all__ = ["EventType", "get", "names", "register", "registered", "unregister"]

# The name becomes a topic (kebab case), a consumer group and a metrics label.
_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,63}")

Sample = Callable[[int, Random], tuple[str, Any]]
"""`sample(n, rng)`: the key and a valid payload of the n-th sample event (n from 1)."""
Rule = Callable[[str, Any], None]
"""`rule(path, value)`: raises schemas' InvalidEvent when a value its type allows is invalid."""


@dataclass(frozen=True, eq=False)
class EventType:
    """Everything the layers below the handlers need to know about one event type."""

    name: str  # e.g. "ChemicalStatus": the envelope's event_type, the topic's <type>
    payload: type  # a dataclass whose fields are the schema's payload fields, in order
    # The reader schema (.avsc); None: the `schemas` package's avro/<name>.avsc.
    schema: Path | None = None
    sample: Sample | None = None  # for `qchem-events sample`, tests and benchmarks
    # What Avro cannot express, by field path (e.g. "payload.to"; schemas/rules.py).
    rules: Mapping[str, Rule] = field(default_factory=dict)
    retries: int | None = None  # the default of RETRIES_PER_TYPE (None: RETRIES)
    critical: bool = False  # in the default CRITICAL_TYPES: dead letters wait for a person
    auto_redrive: bool = False  # in the default AUTO_REDRIVE_TYPES

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(
                f"event type name {self.name!r}: CamelCase letters and digits, 1-64 characters"
            )
        if not (isinstance(self.payload, type) and is_dataclass(self.payload)):
            raise TypeError(f"{self.name}: payload must be a dataclass, got {self.payload!r}")
        if self.retries is not None and not 0 <= self.retries <= 10:
            raise ValueError(f"{self.name}: retries must be between 0 and 10")
        if self.critical and self.auto_redrive:
            raise ValueError(f"{self.name}: a critical type is never auto-redriven")

    @property
    def payload_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self.payload))


_lock = threading.Lock()
_types: dict[str, EventType] = {}
_view: Mapping[str, EventType] = MappingProxyType(_types)


def register(event_type: EventType) -> EventType:
    """Add `event_type`; ValueError if another one already has its name."""
    with _lock:
        known = _types.get(event_type.name)
        if known is not None and known is not event_type:
            raise ValueError(f"event type {event_type.name!r} is registered already")
        _types[event_type.name] = event_type
    return event_type


def unregister(name: str) -> None:
    """Forget `name` (tests that register a type of their own); no error if it is unknown."""
    with _lock:
        _types.pop(name, None)


def registered() -> Mapping[str, EventType]:
    """Every registered type by name, in registration order (a read-only live view)."""
    return _view


def names() -> tuple[str, ...]:
    """The registered names in registration order; RuntimeError when there are none.

    None means the built-in types were never imported (`import schemas` registers them):
    a bug in the caller, which would otherwise see every event type as unknown.
    """
    if not _types:
        raise RuntimeError("no event types registered: import schemas (schemas/catalog.py) first")
    return tuple(_types)


def get(name: str) -> EventType | None:
    return _types.get(name)
