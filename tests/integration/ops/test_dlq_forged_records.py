"""Issue 17 #7 and #9 against the real broker: forged records produced straight to a DLQ.

A producer with rights on the DLQ topic chooses every header (their names too, as raw bytes
through kcat), the key and the value; the broker bounds the record timestamp itself (Kafka 4:
at most an hour ahead), so the absurd times arrive in the time headers. `dlq list` and
`dlq show`, human and --json, must exit 0, show each record, and print no byte that drives a
terminal.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from confluent_kafka import Producer

from common.settings import Settings
from devtools.kafka import kafka_config
from retry_topics import headers as rh
from schemas.safe_text import CONTROL
from tests.integration.ops.test_dlq_cli import dlq, names_for
from tests.support.dlq import dlq_headers

pytestmark = pytest.mark.integration

INT64_MAX_TEXT = str(2**63 - 1).encode()
TERMINAL = b"\x1b[2J\x1b]0;pwned\x07\x1b[8m\xc2\x9b31m\rforged"


def produce_forged(settings: Settings, topic: str) -> None:
    producer = Producer(kafka_config(settings))
    forged = [(rh.FIRST_FAILURE, INT64_MAX_TEXT), (rh.ORIGIN_TIMESTAMP, INT64_MAX_TEXT)]
    failed: list[object] = []
    producer.produce(
        topic,
        key=b"k-" + TERMINAL,
        value=b'{"event_id": "x' + TERMINAL + b'"}',
        headers=[*dlq_headers(error_class="Boom"), *forged, (rh.ERROR_MESSAGE, TERMINAL)],
        partition=0,
        on_delivery=lambda err, _msg: failed.append(err) if err else None,
    )
    assert producer.flush(10) == 0 and not failed, failed
    # kcat writes a header name's bytes as given: one that is not UTF-8 (issue 17 #1).
    bootstrap, name = settings.kafka_bootstrap_servers.encode(), b"x-trace\xff=" + TERMINAL
    subprocess.run(
        [b"kcat", b"-P", b"-b", bootstrap, b"-t", topic.encode(), b"-p", b"0", b"-H", name],
        input=TERMINAL,
        check=True,
        timeout=30,
    )


def no_terminal_bytes(text: str) -> None:
    found = {c for c in text if CONTROL.match(c)} - {"\n", "\t"}
    assert not found, text


def test_forged_dlq_records_render_in_list_and_show(settings: Settings) -> None:
    settings = settings.model_copy(update={"event_types": ("Email",)})
    names = names_for(settings, "Email")
    produce_forged(settings, names.dlq)

    listed = dlq(settings, "list", "--type", "Email")
    assert listed.returncode == 0, listed.stderr
    assert "origin:  qchem.email:2:41 at 9223372036854775807 (not a valid time)" in listed.stdout
    assert "Email:0:1" in listed.stdout and "2 records" in listed.stdout
    assert "\\x1b[2J" in listed.stdout
    no_terminal_bytes(listed.stdout)

    as_json = dlq(settings, "list", "--type", "Email", "--json")
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert records[0]["first_failure"] is None
    assert records[0]["origin"]["timestamp"] == 2**63 - 1
    assert records[1]["headers"] == []  # the client cannot read a non-UTF-8 header name
    no_terminal_bytes(as_json.stdout)

    for ref in ("Email:0:0", "Email:0:1"):
        shown = dlq(settings, "show", ref)
        assert shown.returncode == 0, shown.stderr
        assert f"record         {ref}" in shown.stdout
        assert "(first failure 9223372036854775807 (not a valid time))" in shown.stdout or (
            ref == "Email:0:1"
        )
        no_terminal_bytes(shown.stdout)
        shown_json = dlq(settings, "show", ref, "--json")
        assert shown_json.returncode == 0, shown_json.stderr
        assert json.loads(shown_json.stdout)["ref"] == ref
