"""common/event_types.py: the one registry every list keyed by event type derives from."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from common import event_types
from common.event_types import EventType
from schemas.catalog import BUILT_IN
from schemas.events import EmailPayload


@dataclass(frozen=True)
class _Payload:
    value: str


def test_the_built_in_types_are_registered_in_order_with_their_defaults() -> None:
    assert event_types.names() == ("ChemicalStatus", "Email", "Report", "ChemicalLookup")
    assert tuple(event_types.registered().values()) == BUILT_IN
    email = event_types.get("Email")
    assert email is not None and email.payload is EmailPayload
    assert (email.retries, email.critical, email.auto_redrive) == (2, False, True)
    assert [t.name for t in BUILT_IN if t.critical] == ["ChemicalStatus", "ChemicalLookup"]
    assert event_types.get("Fax") is None


def test_a_name_is_registered_once() -> None:
    first = EventType("Probe", _Payload)
    event_types.register(first)
    try:
        assert event_types.register(first) is first  # the same registration again: no-op
        with pytest.raises(ValueError, match="'Probe' is registered already"):
            event_types.register(EventType("Probe", _Payload))
        with pytest.raises(ValueError, match="registered already"):
            event_types.register(EventType("Email", EmailPayload))
        assert event_types.names()[-1] == "Probe"
    finally:
        event_types.unregister("Probe")
    assert "Probe" not in event_types.registered()
    event_types.unregister("Probe")  # unknown: nothing to do


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": "email"}, "CamelCase"),
        ({"name": "Chemical-Status"}, "CamelCase"),
        ({"name": ""}, "CamelCase"),
        ({"name": "A" * 65}, "CamelCase"),
        ({"payload": dict}, "payload must be a dataclass"),
        ({"payload": _Payload(value="x")}, "payload must be a dataclass"),
        ({"retries": 11}, "retries"),
        ({"retries": -1}, "retries"),
        ({"critical": True, "auto_redrive": True}, "never auto-redriven"),
    ],
)
def test_a_bad_registration_is_refused(kwargs: dict[str, object], error: str) -> None:
    arguments: dict[str, object] = {"name": "Probe", "payload": _Payload, **kwargs}
    with pytest.raises((ValueError, TypeError), match=error):
        EventType(**arguments)  # type: ignore[arg-type]


def test_payload_fields_are_the_dataclass_fields_in_order() -> None:
    assert EventType("Probe", EmailPayload).payload_fields == ("to", "subject", "body")


def test_no_registration_at_all_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_types, "_types", {})
    with pytest.raises(RuntimeError, match="no event types registered"):
        event_types.names()
