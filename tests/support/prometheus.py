"""A real Prometheus server (Debian package `prometheus`) scraping an application under test.

The project's alert rules are loaded with their windows shrunk to test size (`10m` -> a few
seconds, by `shrink_windows`), so a test sees an alert fire through Prometheus's own API
against real scraped series - what promtool unit tests with made-up series cannot show.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devtools.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules" / "qchem-events.rules.yml"


class PrometheusMissing(RuntimeError):
    pass


def shrink_windows(rules_text: str, window: str) -> str:
    """Every `[10m]`, `offset 10m` and `for: 10m` of the rules becomes `window`."""
    text = re.sub(r"\[(\d+[smh])\]", f"[{window}]", rules_text)
    text = re.sub(r"offset \d+[smh]", f"offset {window}", text)
    return re.sub(r"for: \d+[smh]", f"for: {window}", text)


@contextmanager
def prometheus_scraping(target: str, workdir: Path, window: str = "15s") -> Iterator[str]:
    """Start Prometheus scraping `target` (host:port) every second; yield its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise PrometheusMissing("no `prometheus` on PATH (apt-get install prometheus)")
    rules = workdir / "rules.yml"
    rules.write_text(shrink_windows(RULES.read_text(), window))
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "scrape_configs": [
                    {"job_name": "qchem-events", "static_configs": [{"targets": [target]}]}
                ],
            }
        )
    )
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, workdir)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], workdir: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}"
            )
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("prometheus not ready within 60 s")


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{url}{path}", timeout=5) as response:
        return json.load(response)["data"]


def firing_alerts(url: str) -> list[dict[str, Any]]:
    return [a for a in api(url, "/api/v1/alerts")["alerts"] if a["state"] == "firing"]
