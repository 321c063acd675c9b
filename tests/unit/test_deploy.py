"""The Dockerfile and deploy/kubernetes/ agree with the application they run.

Schema validity of the Kubernetes objects is `make lint`'s job (kubernetes-validate --strict);
here: the environment variable names and values are settings the application reads and
accepts, the port and probe paths are the ones ops/http.py serves, the grace period outlasts the
app's shutdown, each KEDA ScaledObject scales its own consumer group on its main topic with no
more replicas than partitions, and the memory request covers the measured peak.
No cluster and no Docker: the files are only parsed (and /healthz, /readyz asked of a real
ops.http.HealthServer in front of a stand-in app).
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from common import event_types
from common.settings import Settings, load_settings
from consumers.listener import BACKPRESSURE_WAIT_S, Listener
from ops.cli import app as cli_app
from ops.http import HealthServer
from retry_topics.naming import topic_names

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
# Keys of a KEDA 2.x ScaledObject spec (keda.sh/v1alpha1): kubernetes-validate has no schema
# for this custom resource, so a misspelt key would otherwise pass silently.
KEDA_SPEC_KEYS = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}
# Secrets the manifests pass to the pods that no setting reads yet: allowed only as optional
# references, so a pod starts whether or not the Secret carries them.
NOT_YET_SETTINGS = {"ADMIN_TOKEN"}


def _docs(*names: str) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in names:
        with (K8S / name).open(encoding="utf-8") as handle:
            docs.extend(d for d in yaml.safe_load_all(handle) if d)
    return docs


def _by_kind(kind: str) -> list[dict[str, Any]]:
    everything = _docs(
        "configmap.yaml",
        "deployments.yaml",
        "pdb.yaml",
        "scaledobjects.yaml",
        "secret.example.yaml",
        "migrate/job.yaml",
    )
    return [d for d in everything if d["kind"] == kind]


def _config() -> dict[str, str]:
    (configmap,) = _by_kind("ConfigMap")
    return dict(configmap["data"])


def _deployments() -> dict[str, dict[str, Any]]:
    """Deployments by the one event type each runs."""
    result = {}
    for deployment in _by_kind("Deployment"):
        env = {e["name"]: e for e in _container(deployment)["env"]}
        result[env["EVENT_TYPES"]["value"]] = deployment
    return result


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _settings_for(event_type: str) -> Settings:
    """The settings a pod of that Deployment gets: the ConfigMap, its EVENT_TYPES, a URL."""
    env = {k.lower(): v for k, v in _config().items()}
    env["event_types"] = event_type
    env["database_url"] = "postgresql://qchem:x@postgres.db.svc:5432/qchem"
    return load_settings(**env)


def test_the_kustomizations_list_files_that_exist() -> None:
    for kustomization in (K8S / "kustomization.yaml", K8S / "migrate" / "kustomization.yaml"):
        resources = yaml.safe_load(kustomization.read_text())["resources"]
        assert resources
        for resource in resources:
            assert (kustomization.parent / resource).is_file(), resource
        # The example Secret is not applied: it would overwrite the real one with placeholders.
        assert "secret.example.yaml" not in resources


def test_every_environment_variable_is_a_setting_with_a_valid_value() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    names = set(_config())
    for workload in [*_by_kind("Deployment"), *_by_kind("Job")]:
        for entry in _container(workload).get("env", []):
            names.add(entry["name"])
            if entry["name"] in NOT_YET_SETTINGS and entry["name"] not in fields:
                assert entry["valueFrom"]["secretKeyRef"]["optional"] is True, entry
    unknown = names - fields - NOT_YET_SETTINGS
    assert not unknown, f"the application reads no such setting: {sorted(unknown)}"
    for event_type in event_types.names():
        assert _settings_for(event_type).event_types == (event_type,)  # every value accepted


def test_one_deployment_per_event_type_with_the_secret_references_that_exist() -> None:
    assert sorted(_deployments()) == sorted(event_types.names())
    (secret,) = _by_kind("Secret")
    for workload in [*_by_kind("Deployment"), *_by_kind("Job")]:
        container = _container(workload)
        assert container["envFrom"] == [{"configMapRef": {"name": "qchem-events-config"}}]
        for entry in container.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["stringData"], ref


def test_the_migration_job_runs_a_real_cli_command() -> None:
    (job,) = _by_kind("Job")
    (command,) = _container(job)["args"]
    commands = typer.main.get_command(cli_app).commands  # type: ignore[attr-defined]
    assert command == "migrate" and command in commands


def test_ports_and_scrape_annotations_agree_with_the_settings() -> None:
    port = _settings_for("Email").metrics_port
    assert port == Settings.model_fields["metrics_port"].default
    assert _settings_for("Email").metrics_host == "0.0.0.0"  # reachable from kubelet/Prometheus
    for deployment in _deployments().values():
        container = _container(deployment)
        (declared,) = container["ports"]
        assert declared["containerPort"] == port
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"]["port"] in (port, declared["name"])
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(port)
        assert annotations["prometheus.io/path"] == "/metrics"


class _StandInApp:
    """What HealthServer reads of an App: healthy, ready, no database."""

    def __init__(self) -> None:
        self.failed = threading.Event()
        self.engine = None
        self.listeners: list[Any] = []
        self.settings = Settings.model_construct(liveness_loop_ttl_s=60.0)

    def ready(self) -> bool:
        return True


@pytest.fixture
def health_server() -> Iterator[HealthServer]:
    server = HealthServer("127.0.0.1", 0, _StandInApp())  # type: ignore[arg-type]
    server.start()
    yield server
    server.stop()


def _status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_probe_paths_are_served_by_the_health_server(health_server: HealthServer) -> None:
    assert _status(health_server.port, "/no-such-path") == 404  # the check can fail
    paths = {"/metrics"}
    for deployment in _deployments().values():
        container = _container(deployment)
        paths |= {container[p]["httpGet"]["path"] for p in ("livenessProbe", "readinessProbe")}
    assert {"/healthz", "/readyz"} <= paths
    for path in paths:
        assert _status(health_server.port, path) in (200, 503), path


def test_the_grace_period_outlasts_the_shutdown() -> None:
    settings = _settings_for("Email")
    # SHUTDOWN_TIMEOUT_S to drain in-flight work, then the final commit, the producer's flush
    # (DeliveryProducer.close, 10 s) and closing the consumer.
    needed = settings.shutdown_timeout_s + 10 + 5
    for deployment in _deployments().values():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > needed


def test_the_liveness_ttl_outlasts_a_normal_revoke() -> None:
    """A rebalance may hold the poll loop for the revoke wait: that is not a hung pod."""
    revoke_wait = inspect.signature(Listener.__init__).parameters["revoke_wait_s"].default
    ttl = _settings_for("Email").liveness_loop_ttl_s
    assert ttl > revoke_wait + BACKPRESSURE_WAIT_S, (ttl, revoke_wait)


def test_memory_request_covers_the_measured_peak() -> None:
    table = (ROOT / "BENCHMARKS.md").read_text()
    match = re.search(r"^\| 5 \| memory[^|]*\|[^|]*\| ([\d.]+) MB peak", table, re.MULTILINE)
    assert match, "BENCHMARKS.md row 5 (memory) not found"
    peak_mib = float(match.group(1)) * 1e6 / 2**20
    for deployment in _deployments().values():
        resources = _container(deployment)["resources"]
        request = int(resources["requests"]["memory"].removesuffix("Mi"))
        limit = int(resources["limits"]["memory"].removesuffix("Mi"))
        assert peak_mib < request <= limit, (peak_mib, request, limit)


def test_each_consumer_group_scales_on_its_main_topic_lag_within_its_partitions() -> None:
    config = _config()
    deployments = _deployments()
    scaled = _by_kind("ScaledObject")
    assert len(scaled) == len(deployments)
    targets = set()
    for obj in scaled:
        spec = obj["spec"]
        assert set(spec) <= KEDA_SPEC_KEYS, set(spec) - KEDA_SPEC_KEYS
        target = spec["scaleTargetRef"]["name"]
        (event_type,) = [t for t, d in deployments.items() if d["metadata"]["name"] == target]
        targets.add(target)
        names = topic_names(_settings_for(event_type), event_type)
        (trigger,) = spec["triggers"]
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == names.group
        assert meta["topic"] == names.main  # never a retry tier: they lag on purpose
        assert meta["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        assert spec["maxReplicaCount"] <= int(config["TOPIC_PARTITIONS"])
    assert len(targets) == len(scaled)


def test_every_pdb_selects_exactly_one_deployment() -> None:
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in _by_kind("Deployment")]
    for pdb in _by_kind("PodDisruptionBudget"):
        wanted = pdb["spec"]["selector"]["matchLabels"]
        matching = [lab for lab in labels if wanted.items() <= lab.items()]
        assert len(matching) == 1, json.dumps(wanted)
    assert len(_by_kind("PodDisruptionBudget")) == len(labels)


def test_the_image_runs_the_cli_as_non_root_with_metrics_reachable() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile.rsplit("\nFROM ", 1)[1]  # the last stage is the image
    users = re.findall(r"^USER (\S+)", runtime, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r'^ENTRYPOINT \["qchem-events"\]', runtime, re.MULTILINE)
    assert re.search(r'^CMD \["run"\]', runtime, re.MULTILINE)
    assert "METRICS_HOST=0.0.0.0" in runtime
    port = Settings.model_fields["metrics_port"].default
    assert re.search(rf"^EXPOSE {port}$", runtime, re.MULTILINE)
    uid = users[-1].split(":")[0]
    for workload in [*_by_kind("Deployment"), *_by_kind("Job")]:
        context = workload["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True and str(context["runAsUser"]) == uid
