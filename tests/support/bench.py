"""Running a benchmark's CI smoke version (`python -m bench.<name> --smoke --json`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_smoke(module: str, kafka_bootstrap: str, database_url: str, timeout: float) -> Any:
    """The benchmark's JSON report; a failed run fails the test with the end of its stderr."""
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "DATABASE_URL": database_url}
    result = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stderr[-4000:]}"
    return json.loads(result.stdout)
