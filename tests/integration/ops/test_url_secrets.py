"""The database password never leaves the process (issue 17, defect 3), through the real CLI.

`postgresql://qchem:Wr0ng@Leak77@127.0.0.1:5432/qchem` used to pass the settings, after which
the driver printed `could not translate host name "Leak77@127.0.0.1"`: the password's tail.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import Settings
from tests.support.app import free_port, settings_env

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).parent / "qchem-events")
TAIL = "Leak77"
COMMANDS = [["stats"], ["health"], ["run"], ["migrate"], ["topics", "list"], ["dlq", "summary"]]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **env, "METRICS_PORT": str(free_port())},
    )


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
def test_an_ambiguous_url_is_refused_at_start_up_without_its_password(
    settings: Settings, args: list[str]
) -> None:
    env = {
        **settings_env(settings),
        "DATABASE_URL": f"postgresql://qchem:Wr0ng@{TAIL}@127.0.0.1:5432/qchem",
    }
    result = run_cli(args, env)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert TAIL not in output and "Wr0ng" not in output
    assert result.stderr.count("\n") == 1 and "DATABASE_URL" in result.stderr
    assert "Traceback" not in output


@pytest.mark.parametrize("args", [["stats"], ["health"], ["run"]], ids=" ".join)
def test_a_refused_login_prints_one_line_without_the_password(
    settings: Settings, args: list[str]
) -> None:
    # Written correctly (%40), but wrong: the driver's error is shown, scrubbed.
    env = {
        **settings_env(settings),
        "DATABASE_URL": f"postgresql://qchem:Wr0ng%40{TAIL}@127.0.0.1:5432/qchem",
        "EVENT_TYPES": "Report",
    }
    result = run_cli(args, env)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert TAIL not in output and "Wr0ng" not in output
    assert "Traceback" not in output
    if args != ["health"]:  # health prints its table, one line per check
        assert result.stderr.count("\n") == 1, result.stderr
        assert "password authentication failed" in result.stderr
