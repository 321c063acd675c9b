"""`qchem-events --version` and shell completion, through the installed console script."""

from __future__ import annotations

import os
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

from tests.support.app import CLI

ROOT = Path(__file__).resolve().parents[3]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def test_version_prints_the_package_version() -> None:
    result = _cli("--version")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"qchem-events {declared}\n"
    assert declared == version("qchem-events")


def _complete(words: str) -> list[str]:
    """What bash completion offers for the words typed (the protocol the script speaks)."""
    typed = words.split(" ")
    result = _cli(
        _QCHEM_EVENTS_COMPLETE="complete_bash",
        COMP_WORDS=words,
        COMP_CWORD=str(len(typed) - 1),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_completion_offers_commands_and_sub_commands() -> None:
    assert _complete("qchem-events dl") == ["dlq"]
    assert _complete("qchem-events dlq rep") == ["replay"]
    assert "create" in _complete("qchem-events topics ")
    assert _complete("qchem-events no-such") == []


def test_completion_script_for_bash_names_the_program() -> None:
    result = _cli("--show-completion", "bash", _TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION="1")
    assert result.returncode == 0, result.stderr
    assert "_qchem_events_completion" in result.stdout
    assert "complete_bash" in result.stdout
