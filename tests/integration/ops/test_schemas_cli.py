"""`qchem-events schemas register` / `check` against the real registry (Apicurio, ccompat API)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from schemas.codec import SCHEMA_SOURCES
from tests.support.app import CLI
from tests.support.registry import registry_client, schema_with

pytestmark = pytest.mark.integration

HAZARD = {"name": "hazard", "type": ["null", "string"], "default": None}


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "schemas", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_register_then_check_candidates(
    schema_registry: str, topic_prefix: str, tmp_path: Path
) -> None:
    env = {"SCHEMA_REGISTRY_URL": schema_registry, "TOPIC_PREFIX": topic_prefix}
    registered = cli("register", "--json", env=env)
    assert registered.returncode == 0, registered.stderr
    rows = json.loads(registered.stdout)
    assert {r["event_type"] for r in rows} == set(SCHEMA_SOURCES)
    client = registry_client(schema_registry)
    for row in rows:
        latest = client.get_latest_version(row["subject"])
        assert latest.schema_id == row["id"]
        assert json.loads(latest.schema.schema_str)["name"] == row["event_type"]
        assert client.get_compatibility(row["subject"]) == "FULL"

    good = tmp_path / "v2.avsc"
    good.write_text(json.dumps(schema_with("ChemicalStatus", add=[HAZARD])))
    ok = cli("check", "ChemicalStatus", str(good), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "readable by the consumer" in ok.stdout and "INCOMPATIBLE" not in ok.stdout

    bad = tmp_path / "bad.avsc"
    bad.write_text(json.dumps(schema_with("ChemicalStatus", drop=("regulation",))))
    refused = cli("check", "ChemicalStatus", str(bad), "--json", env=env)
    assert refused.returncode == 1
    verdict = json.loads(refused.stdout)
    assert any("payload.regulation" in p for p in verdict["local"])
    assert verdict["registry"]["compatible"] is False  # FULL: the registry refuses it too


def test_usage_errors_are_one_line_and_exit_2(schema_registry: str, tmp_path: Path) -> None:
    env = {"SCHEMA_REGISTRY_URL": schema_registry}
    not_json = tmp_path / "x.avsc"
    not_json.write_text("{nope")
    for args, mentions in [
        (("check", "Nope", str(not_json)), "unknown event type"),
        (("check", "Email", str(tmp_path / "missing.avsc")), "cannot read"),
        (("check", "Email", str(not_json)), "not an Avro schema"),
        (("register", "--compatibility", "SOMETIMES"), "unknown compatibility level"),
    ]:
        result = cli(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert mentions in result.stderr and result.stderr.count("\n") == 1
    unset = cli("register", env={"SCHEMA_REGISTRY_URL": ""})
    assert unset.returncode == 2 and "SCHEMA_REGISTRY_URL is not set" in unset.stderr


def test_an_unreachable_registry_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = cli("register", env={"SCHEMA_REGISTRY_URL": "http://127.0.0.1:9/apis/ccompat/v7"})
    assert result.returncode == 1
    assert "failed" in result.stderr and result.stderr.count("\n") == 1
