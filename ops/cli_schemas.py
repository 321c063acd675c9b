"""`qchem-events schemas ...`: register our Avro schemas, and check a producer's candidate.

    schemas register [--type T]...      our schemas under <main topic>-value, subject rule FULL
    schemas check TYPE FILE.avsc        can we read what FILE writes? (locally and registry)

The rule (schemas/README.md): BACKWARD as the consumer sees it - our reader schema must read
data written with a producer's newer schema. The local check uses the same code the consumer
uses on every new writer schema id (schemas/registry.py), so its verdict is the consumer's
verdict, with the field named. In the registry's own terms a producer's new schema must then
be FORWARD compatible with ours, which the registry's BACKWARD level alone does not check
(it would let a producer drop a field without a default): `register` sets FULL (BACKWARD and
FORWARD) so the registry refuses what the consumer would reject.
Exit codes as everywhere: 0 fine, 1 a problem found, 2 a usage error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from retry_topics.naming import topic_names

schemas_app = typer.Typer(
    help="Register the event schemas in the Schema Registry, check a candidate schema.",
    no_args_is_help=True,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
COMPATIBILITY = "FULL"
LEVELS = ("BACKWARD", "FORWARD", "FULL", "BACKWARD_TRANSITIVE", "FORWARD_TRANSITIVE",
          "FULL_TRANSITIVE", "NONE")  # fmt: skip


def _client() -> Any:
    from confluent_kafka.schema_registry import SchemaRegistryClient

    from ops.cli_common import fail, settings

    s = settings()
    if not s.schema_registry_url:
        fail("SCHEMA_REGISTRY_URL is not set (e.g. http://127.0.0.1:8085/apis/ccompat/v7)", 2)
    return SchemaRegistryClient.new_client(
        {"url": s.schema_registry_url, "timeout": s.schema_registry_timeout_s, "max.retries": 1}
    )


def _subject(event_type: str) -> str:
    from ops.cli_common import settings

    # TopicNameStrategy, as producers use
    return f"{topic_names(settings(), event_type).main}-value"


def _known_type(event_type: str) -> str:
    from common import event_types
    from ops.cli_common import fail

    if event_type not in event_types.registered():
        fail(f"unknown event type {event_type!r}; choose from {', '.join(event_types.names())}", 2)
    return event_type


@schemas_app.command("register")
def register(
    types: Annotated[
        list[str] | None, typer.Option("--type", "-t", help="Only this event type (repeatable).")
    ] = None,
    level: Annotated[
        str, typer.Option("--compatibility", help=f"Subject level, one of {', '.join(LEVELS)}.")
    ] = COMPATIBILITY,
    as_json: JsonFlag = False,
) -> None:
    """Register each event type's schema under <main topic>-value; set the subject's level."""
    from confluent_kafka.schema_registry import Schema

    from ops.cli_common import emit, fail, settings
    from schemas.codec import SCHEMA_SOURCES

    if level.upper() not in LEVELS:
        fail(f"unknown compatibility level {level!r}; choose from {', '.join(LEVELS)}", 2)
    chosen = [_known_type(t) for t in types] if types else list(settings().event_types)
    client = _client()
    done = []
    for event_type in chosen:
        subject = _subject(event_type)
        try:
            client.set_compatibility(subject_name=subject, level=level.upper())
            schema_id = client.register_schema(
                subject, Schema(json.dumps(SCHEMA_SOURCES[event_type]), "AVRO")
            )
        except Exception as exc:  # SchemaRegistryError, a transport error: one line
            fail(f"registering {event_type} under {subject} failed: {exc}")
        done.append(
            {"event_type": event_type, "subject": subject, "id": schema_id, "level": level.upper()}
        )
    text = "\n".join(
        f"{d['event_type']:<15} {d['subject']}  id {d['id']}  ({d['level']})" for d in done
    )
    emit(done, as_json, text)


@schemas_app.command("check")
def check(
    event_type: Annotated[str, typer.Argument(help="The event type the schema writes.")],
    candidate: Annotated[Path, typer.Argument(help="The producer's new schema (.avsc).")],
    offline: Annotated[
        bool, typer.Option("--offline", help="Only the local check; no registry needed.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Can the consumer read what CANDIDATE writes? Exit 0 yes, 1 no (the fields named)."""
    from confluent_kafka.schema_registry import Schema

    from ops.cli_common import emit, fail
    from schemas.codec import SCHEMA_SOURCES
    from schemas.registry import incompatibilities

    _known_type(event_type)
    try:
        writer = json.loads(candidate.read_text(encoding="utf-8"))
        problems = incompatibilities(SCHEMA_SOURCES[event_type], writer)
    except OSError as exc:
        fail(f"cannot read {candidate}: {exc.strerror or exc}", 2)
    except Exception as exc:  # not JSON, not an Avro schema
        fail(f"{candidate} is not an Avro schema: {str(exc).splitlines()[0][:200]}", 2)
    result: dict[str, Any] = {"event_type": event_type, "local": problems or "compatible"}
    if not offline:
        subject = _subject(event_type)
        try:
            registry_ok = _client().test_compatibility(subject, Schema(json.dumps(writer), "AVRO"))
        except Exception as exc:
            fail(f"the registry could not check {subject}: {exc}")
        result["registry"] = {"subject": subject, "compatible": bool(registry_ok)}
    ok = not problems and result.get("registry", {}).get("compatible", True)
    verdict = "readable by the consumer" if not problems else "NOT readable by the consumer"
    lines = [f"{event_type}: {verdict}"]
    lines += [f"  {p}" for p in problems]
    if "registry" in result:
        said = "compatible" if result["registry"]["compatible"] else "INCOMPATIBLE"
        lines.append(f"  registry ({result['registry']['subject']}, its level): {said}")
    emit(result, as_json, "\n".join(lines))
    if not ok:
        raise typer.Exit(1)
