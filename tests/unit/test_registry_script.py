"""infra/registry.sh refuses, loudly and at once, to run without Java 21+ (no download first)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.support import services

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "infra" / "registry.sh"


def run(tmp_path: Path, java_version: str, *args: str) -> subprocess.CompletedProcess[str]:
    # A `java` that reports the given version, and no JDK folder to fall back to.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "java"
    fake.write_text(f"#!/bin/sh\necho 'openjdk version \"{java_version}\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "QCHEM_REGISTRY_JAVA")}
    env.update(
        PATH=f"{bin_dir}:/usr/bin:/bin",
        QCHEM_REGISTRY_JVM_DIR=str(tmp_path / "no-jvms"),
        QCHEM_REGISTRY_HOME=str(tmp_path / "home"),
        QCHEM_REGISTRY_PORT="1",  # nothing answers there
    )
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


def test_java_17_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    result = run(tmp_path, "17.0.13", "up")
    assert result.returncode == 1
    assert "needs Java 21 or newer" in result.stderr
    assert not (tmp_path / "home" / "dist").exists()  # failed before resolving anything


def test_java_21_is_accepted(tmp_path: Path) -> None:
    result = run(tmp_path, "21.0.5", "java")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "bin" / "java")


def test_a_bad_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "21.0.5", "bogus")
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_a_configured_registry_that_does_not_answer_fails_the_tests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The session fixture turns this into pytest.fail: never a skip, CI or not.
    monkeypatch.setenv("TEST_SCHEMA_REGISTRY_URL", "http://127.0.0.1:9/apis/ccompat/v7")
    with pytest.raises(services.ServiceUnavailable, match="does not answer"):
        services.schema_registry_url()
