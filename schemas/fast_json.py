"""A fast path for plain JSON values: msgspec parses straight into typed structs.

`codec.decode` spends its time in `json.loads`, in walking the resulting dicts and in calling
a checker per field. For the common case - a JSON value, no Schema Registry framing - this
module parses the bytes with msgspec into `Struct` types derived from the same parsed Avro
schema and field rules the slow checker is compiled from, with the checks Avro's types imply
done by msgspec in C. `schemas/compiled.py` builds a type's decoder where it compiles the
type's checker (`CompiledType.fast`), so a new event type - one registered at run time too -
needs nothing here; a schema using something this module cannot express has no fast decoder
(`fast` is None), and its type always takes the slow path.

**The fast path only ever accepts.** A decoder returns the `Event` or None, never a verdict:
on None the caller runs the slow path, which decides, so every rejection - its reason code and
detail included - is the slow path's by construction. For an accepted value the `Event` is
equal to the slow path's. What the slow path checks, and where the fast path does it:

* JSON syntax and UTF-8 (slow: `json` after a strict decode): msgspec, which takes only
  RFC 8259 JSON - no BOM, NaN, raw control characters or unpaired `\\uD800`-`\\uDFFF`
  escapes; a non-ASCII value is also decoded strictly first.
* types, required fields, `[null, T]`, defaults: the struct types, defaults from the schema.
* unknown fields (slow: ignored): refused, so such a value takes the slow path; nothing is
  ever skipped unparsed, and nesting depth and number sizes stay bounded by the types.
* strings of at most `MAX_STRING_CHARS`: `Meta(max_length=...)` (code points, as `len`).
* strings without a lone surrogate: msgspec never decodes one (see above).
* strings without NUL: a value holding the escape `\\u0000` takes the slow path (a raw NUL
  inside a JSON string is refused by both parsers).
* int and long ranges: `Meta(ge=..., le=...)`.
* field rules (`ENVELOPE_RULES` and the type's own, schemas/rules.py): the same functions,
  called on the decoded values (on a map, on each key and value, as the checker does).
* logical types (the UUID form, the timestamp's forms and range): the slow path's own leaf
  checker for that field, which also normalises them.
* the `Event`: built by `to_event`, from a dict equal to what the slow checker returns.

Duplicate keys resolve as in `json` (the last wins; msgspec type-checks every occurrence).
`tests/unit/schemas/test_fast_json.py` holds both paths to the same verdict, reason code and
`Event` on hostile input and pins each item above. A new field rule or a change to
a logical type's checker needs nothing here; a check added anywhere else in the slow path (a
new rule for every string, say) must be added here too - the properties draw the inputs such
checks are about (control, bidi, surrogate and noncharacter code points, boundary lengths and
integers) so that a forgotten one fails them.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final

import msgspec

from schemas.events import Event
from schemas.validation import MAX_STRING_CHARS, InvalidEvent, Rule, compile_checker, to_event

__all__ = ["FastDecoder", "Unsupported", "fast_decoder"]

FastDecoder = Callable[[bytes], Event | None]
Fixup = Callable[[Any], Any]
"""Turns a value msgspec decoded into the one the slow checker returns, or raises InvalidEvent."""

_STRING: Final = Annotated[str, msgspec.Meta(max_length=MAX_STRING_CHARS)]
_INTEGERS: Final = {  # Avro's ranges
    "int": Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1)],
    "long": Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)],
}
# Logical types, checked and normalised by the slow path's leaf checker, as msgspec should
# decode their JSON form (a timestamp-millis is an ISO-8601 string or epoch milliseconds).
_LOGICAL: Final[dict[tuple[str, str], Any]] = {
    ("string", "uuid"): str,
    ("long", "timestamp-millis"): int | str,
}
_NUL_ESCAPE: Final = b"\\u0000"  # a raw NUL inside a JSON string is invalid in both parsers


class Unsupported(Exception):
    """A schema feature the fast path does not express; that event type takes the slow path."""


def fast_decoder(
    schema: Any, rules: Mapping[str, Rule], payload: type, event_type: str
) -> FastDecoder:
    """A decoder of plain JSON `event_type` values, from its parsed Avro schema, the field
    `rules` its checker is compiled with and its `payload` dataclass (schemas/compiled.py).

    The decoder returns the `Event` the slow path would return, or None when it is not sure
    the slow path would accept the value: then the slow path must decide. Raises
    `Unsupported` for a schema it cannot express.
    """
    if not _is_record(schema):
        raise Unsupported("the top level of an event schema must be a record")
    struct_type, convert = _record(schema, rules, "", event_type)
    parse = msgspec.json.Decoder(struct_type).decode

    def identity(fields: dict[str, Any]) -> dict[str, Any]:
        return fields

    def decode(value: bytes) -> Event | None:
        if _NUL_ESCAPE in value:
            return None
        try:
            if not value.isascii():
                value.decode("utf-8")  # strictly, as the slow path does (msgspec does too)
            return to_event(convert(parse(value)), event_type, identity, payload)
        except (ValueError, InvalidEvent):  # msgspec's DecodeError is a ValueError
            return None

    return decode


# --- Deriving the struct types from the schema -----------------------------------------------


def _record(
    schema: dict[str, Any], rules: Mapping[str, Rule], path: str, prefix: str
) -> tuple[Any, Fixup]:
    """A Struct type for a record schema, and the fixup turning one into the checker's dict.

    Attributes carry the Avro names, so `msgspec.structs.asdict` (C) builds the dict; a name
    Python cannot use as an attribute (a keyword such as `from`, or one that a class body
    would mangle) gets another on the struct, renamed back on the wire and in the dict.
    """
    attributes: list[tuple[Any, ...]] = []
    rename: dict[str, str] = {}
    checked: list[tuple[str, Fixup]] = []
    ruled: list[tuple[str, str, Rule]] = []
    for index, field in enumerate(schema["fields"]):
        name = field["name"]
        field_path = f"{path}.{name}" if path else name
        field_type, fixup = _type(field["type"], rules, field_path, prefix)
        attribute = name
        if keyword.iskeyword(name) or name.startswith("__"):
            attribute = f"renamed_field_{index}"
            rename[attribute] = name
        if any(attribute == taken[0] for taken in attributes):
            raise Unsupported(f"{field_path}: two fields named {attribute!r} on the struct")
        if "default" in field:
            default = _struct_default(field, fixup, field_path)
            attributes.append((attribute, field_type, default))
        else:
            attributes.append((attribute, field_type))
        if isinstance(fixup, _Ruled):  # the common case, called without a wrapper
            ruled.append((name, fixup.path, fixup.rule))
        elif fixup is not None:
            checked.append((name, fixup))
    struct_type = msgspec.defstruct(
        f"{prefix}_{path.replace('.', '_') or 'event'}",
        attributes,
        rename=rename or None,
        forbid_unknown_fields=True,
        gc=False,  # short-lived and never part of a cycle
    )
    renamed = tuple(rename.items())
    asdict = msgspec.structs.asdict

    def convert(value: Any) -> dict[str, Any]:
        fields = asdict(value)
        for attribute, name in renamed:
            fields[name] = fields.pop(attribute)
        for name, rule_path, rule in ruled:
            rule(rule_path, fields[name])
        for name, fixup in checked:
            fields[name] = fixup(fields[name])
        return fields

    return struct_type, convert


def _type(
    schema: Any, rules: Mapping[str, Rule], path: str, prefix: str
) -> tuple[Any, Fixup | None]:
    """The msgspec type of a field's JSON value, and its fixup (None: the value as decoded)."""
    if isinstance(schema, list):
        branches = [s for s in schema if s != "null"]
        if len(schema) != 2 or len(branches) != 1:
            raise Unsupported(f"{path}: only [null, T] unions")
        inner_type, inner = _type(branches[0], rules, path, prefix)
        if inner is None:
            return inner_type | None, None

        def optional(value: Any) -> Any:
            return None if value is None else inner(value)

        return inner_type | None, optional
    if _is_record(schema):
        return _record(schema, rules, path, prefix)
    try:  # what the slow path cannot check has no fast path either
        check = compile_checker(schema, rules, path)
    except NotImplementedError as exc:
        raise Unsupported(str(exc)) from exc
    if isinstance(schema, str):
        schema = {"type": schema}
    avro_type, logical = schema.get("type"), schema.get("logicalType")
    if logical is not None:
        if (avro_type, logical) not in _LOGICAL:
            raise Unsupported(f"{path}: logical type {logical!r}")
        return _LOGICAL[avro_type, logical], check
    rule = rules.get(path)
    if avro_type == "string":
        return _STRING, None if rule is None else _Ruled(rule, path)
    if avro_type in _INTEGERS:
        return _INTEGERS[avro_type], None if rule is None else _Ruled(rule, path)
    if avro_type == "map" and schema.get("values") == "string":
        return dict[_STRING, _STRING], None if rule is None else _ruled_map(rule, path)  # type: ignore[valid-type]
    raise Unsupported(f"{path}: Avro type {schema!r}")


class _Ruled:
    """The fixup of a plain string or integer with a rule: the rule, the value unchanged."""

    __slots__ = ("path", "rule")

    def __init__(self, rule: Rule, path: str) -> None:
        self.rule, self.path = rule, path

    def __call__(self, value: Any) -> Any:
        self.rule(self.path, value)
        return value


def _ruled_map(rule: Rule, path: str) -> Fixup:
    # The slow path names the entry in the detail; an accepted value has none to name.
    def fixup(value: dict[str, str]) -> dict[str, str]:
        for key, item in value.items():
            rule(path, key)
            rule(path, item)
        return value  # a dict of its own already, as the slow path's copy

    return fixup


def _struct_default(field: dict[str, Any], fixup: Fixup | None, path: str) -> Any:
    """The struct default for a field's Avro default, which the slow path uses unchecked.

    The fast path cannot tell a filled-in default from the same value sent, so it runs the
    fixup on both: fine when the fixup hands the default back unchanged (a default it rejects
    only sends values without the field down the slow path), not when it would normalise
    the default into something else.
    """
    default = field["default"]
    if _is_record(field["type"]) or isinstance(default, list):
        raise Unsupported(f"{path}: a record or array default")
    if fixup is not None:
        try:
            if fixup(default) != default:
                raise Unsupported(f"{path}: the checker changes the default {default!r}")
        except InvalidEvent:
            pass
    if isinstance(default, dict):
        return msgspec.field(default_factory=lambda: dict(default))
    return default


def _is_record(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "record"
