"""A type registered at run time (tests/support/toy) is known to every layer like a built-in:
the codec, the samples, the settings and the handlers - and forgotten when unregistered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest

from common import event_types
from common.event_types import EventType
from common.settings import load_settings
from consumers.handlers import HANDLER_TYPES, build_handler, register_handler
from consumers.handlers.report import ReportHandler
from schemas import codec
from schemas.codec import AVRO, InvalidEvent, decode, encode_avro, encode_json, headers_for
from schemas.rules import one_line_rule
from schemas.samples import sample_events
from tests.support import toy
from tests.support.config import config_error


@pytest.fixture
def tally() -> Iterator[EventType]:
    with toy.registered() as event_type:
        yield event_type


def test_samples_round_trip_in_both_formats(tally: EventType) -> None:
    events = sample_events(toy.NAME, 20, seed=1)
    assert {e.key for e in events} == {"counter-0", "counter-1", "counter-2"}
    for event in events:
        assert isinstance(event.payload, toy.TallyPayload) and event.payload.note is None
        assert decode(encode_json(event), None, toy.NAME) == event
        assert decode(encode_avro(event), headers_for(AVRO), toy.NAME) == event
    assert codec.SCHEMA_SOURCES[toy.NAME] == json.loads(toy.SCHEMA.read_text())
    assert list(codec.SCHEMAS)[-1] == toy.NAME


def test_its_schema_checks_its_events(tally: EventType) -> None:
    event = sample_events(toy.NAME, 1)[0]
    document = json.loads(encode_json(event))
    document["payload"]["amount"] = "12"
    with pytest.raises(InvalidEvent) as error:
        decode(json.dumps(document).encode(), None, toy.NAME)
    assert (error.value.reason, "payload.amount" in error.value.detail) == ("wrong_type", True)
    # A Tally on the Email topic is on the wrong topic; the rules of other types stay theirs.
    with pytest.raises(InvalidEvent, match="wrong_topic"):
        decode(encode_json(event), None, "Email")


def test_unregistered_it_is_unknown_everywhere(tally: EventType) -> None:
    value = encode_json(sample_events(toy.NAME, 1)[0])
    event_types.unregister(toy.NAME)  # the fixture's own unregistering is then a no-op
    with pytest.raises(InvalidEvent, match="unknown_event_type"):
        decode(value, None, "Email")
    with pytest.raises(ValueError, match="is not one of"):
        decode(value, None, toy.NAME)
    with pytest.raises(ValueError, match="unknown event type 'Tally'"):
        sample_events(toy.NAME, 1)
    assert toy.NAME not in codec.SCHEMA_SOURCES


def test_the_settings_accept_it_and_take_its_defaults(tally: EventType) -> None:
    settings = load_settings(_env_file=None, event_types="Tally,Email")
    assert settings.event_types == ("Tally", "Email")
    assert settings.retries_for("Tally") == 1  # its registration's retries
    assert load_settings(_env_file=None).event_types[-1] == "Tally"  # default: every type


def test_the_settings_refuse_it_once_unregistered(monkeypatch: pytest.MonkeyPatch) -> None:
    message = config_error(monkeypatch, EVENT_TYPES="Tally")
    assert message.startswith("EVENT_TYPES: unknown event type(s) ['Tally']")


def test_a_payload_that_does_not_mirror_its_schema_fails_at_first_use() -> None:
    @dataclass(frozen=True)
    class Swapped:
        amount: int
        counter: str
        note: str | None = None

    event_types.register(replace(toy.TALLY, payload=Swapped))
    try:
        with pytest.raises(ValueError, match=r"must be the schema's payload fields, in order"):
            decode(b"{}", None, toy.NAME)
    finally:
        event_types.unregister(toy.NAME)


def test_a_rule_for_a_field_its_schema_lacks_fails_at_first_use() -> None:
    def positive(path: str, value: object) -> None:
        pass

    event_types.register(replace(toy.TALLY, rules={"payload.amout": positive}))
    try:
        with pytest.raises(
            ValueError, match=r"rules for fields its schema lacks: \['payload.amout'\]"
        ):
            decode(b"{}", None, toy.NAME)
    finally:
        event_types.unregister(toy.NAME)


def test_its_registration_gives_its_field_rules() -> None:
    event = sample_events("Report", 1)[0]  # any event: only its Tally-shaped copy is decoded
    document = json.loads(encode_json(event))
    document.update(event_type=toy.NAME, payload={"counter": "two\nlines", "amount": 1})
    value = json.dumps(document).encode()
    with toy.registered():
        assert decode(value, None, toy.NAME).payload.counter == "two\nlines"
    event_types.register(replace(toy.TALLY, rules={"payload.counter": one_line_rule}))
    try:
        with pytest.raises(InvalidEvent, match=r"control_character: payload\.counter"):
            decode(value, None, toy.NAME)
    finally:
        event_types.unregister(toy.NAME)


def test_its_handler_is_built_like_the_others(tally: EventType) -> None:
    settings = load_settings(_env_file=None)
    handler = build_handler(toy.NAME, settings)
    assert isinstance(handler, toy.TallyHandler) and handler.dependency is None
    assert HANDLER_TYPES[toy.NAME] is toy.TallyHandler
    register_handler(toy.TallyHandler)  # the same class again: no-op
    with pytest.raises(ValueError, match="has a handler already"):
        register_handler(type("OtherTally", (toy.TallyHandler,), {}))


def test_a_handler_needs_a_registered_type() -> None:
    class FaxHandler(ReportHandler):
        event_type = "Fax"

    with pytest.raises(ValueError, match="event type 'Fax' is not registered"):
        register_handler(FaxHandler)
    with pytest.raises(ValueError, match="no handler for event type 'Tally'"):
        build_handler(toy.NAME, load_settings(_env_file=None))


def test_a_broken_registration_stops_the_runtime_before_it_consumes() -> None:
    from consumers.runtime import Runtime

    @dataclass(frozen=True)
    class Short:
        counter: str

    event_types.register(replace(toy.TALLY, payload=Short))
    try:
        settings = load_settings(_env_file=None, event_types="Tally")
        with pytest.raises(ValueError, match="must be the schema's payload fields"):
            Runtime(settings)
    finally:
        event_types.unregister(toy.NAME)
