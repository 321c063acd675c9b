"""`GET /api/v1/health`: dependencies, breakers and lag per instance, lag per partition.

Dependencies are asked directly (ops/health.py's checks: Kafka, PostgreSQL, SMTP, chemical
API). Breakers live in each running instance, so each instance's /metrics is read
(ADMIN_INSTANCES): its breaker states and its own view of lag per owned partition. The
group's lag per partition is asked of the broker (end offset minus committed offset), the
same definition as the application's lag gauge.
"""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from common.settings import Settings
from ops.health import (
    BREAKER_STATES,
    check_chemical_api,
    check_kafka,
    check_postgresql,
    check_smtp,
    group_lag,
)


def instance(url: str) -> dict[str, Any]:
    """One instance's breakers and per-partition lag, from its /metrics."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=3) as response:
            body = response.read().decode()
    except OSError as exc:
        return {"url": url, "status": "unreachable", "error": str(exc)[:200]}
    breakers: dict[str, str] = {}
    lag: list[dict[str, Any]] = []
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if family.name == "qchem_dependency_breaker_state":
                breakers[sample.labels["dependency"]] = BREAKER_STATES.get(int(sample.value), "?")
            elif family.name == "qchem_consumer_lag_records":
                lag.append({**sample.labels, "lag": int(sample.value)})
    status = "degraded" if "open" in breakers.values() else "ok"
    return {"url": url, "status": status, "breakers": breakers, "lag": lag}


def health(settings: Settings, instances: tuple[str, ...]) -> dict[str, Any]:
    urls = instances or (f"http://{settings.metrics_host}:{settings.metrics_port}",)
    checks = {
        "kafka": check_kafka,
        "postgresql": check_postgresql,
        "smtp": check_smtp,
        "chemical_api": check_chemical_api,
    }
    with ThreadPoolExecutor(max_workers=4 + len(urls)) as pool:  # the timeouts overlap
        futures = {name: pool.submit(check, settings) for name, check in checks.items()}
        found = [pool.submit(instance, url) for url in urls]
        dependencies = {name: future.result() for name, future in futures.items()}
        seen = [future.result() for future in found]
    lag = group_lag(settings) if dependencies["kafka"]["status"] == "ok" else []
    groups: dict[str, int] = {}
    for row in lag:
        groups[row["group"]] = groups.get(row["group"], 0) + row["lag"]
    return {
        "healthy": all(d["status"] == "ok" for d in dependencies.values())
        and all(i["status"] == "ok" for i in seen),
        "dependencies": dependencies,
        "instances": seen,
        "lag": {"groups": groups, "partitions": lag},
    }
