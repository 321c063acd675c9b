"""docker-compose.kafka.yml and the files it mounts from deploy/.

No Docker is needed (nor started): the files are only parsed. The point is that the Compose
stack keeps agreeing with the application's defaults (`common.settings.Settings`) - a user
with Docker runs `docker compose -f docker-compose.kafka.yml up -d` then `make run` without
setting a single variable - and that every mounted file exists and has the expected shape.

The defaults are read from the field definitions, not from `Settings()`, so that a DATABASE_URL
or KAFKA_BOOTSTRAP_SERVERS in the environment (CI, a developer's `.env`) cannot change them.
"""

from __future__ import annotations

import base64
import fnmatch
import re
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from common.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA_PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
KAFKA_SCRIPT = ROOT / "infra" / "kafka.sh"

SERVICES = {"kafka", "postgres", "prometheus", "grafana", "smtp", "registry"}
REGISTRY_SCRIPT = ROOT / "infra" / "registry.sh"
COMPOSE_TOP_LEVEL = {"name", "services", "volumes", "networks", "configs", "secrets"}
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")


def _load(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _default(field: str) -> Any:
    value = Settings.model_fields[field].default
    return value.get_secret_value() if hasattr(value, "get_secret_value") else value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus_config() -> dict[str, Any]:
    return _load(PROMETHEUS_FILE)


def _published(service: dict[str, Any]) -> dict[int, int]:
    """Container port -> host port; short ("[ip:]host:container[/proto]") or long syntax."""
    mapping: dict[int, int] = {}
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            mapping[int(entry["target"])] = int(entry["published"])
            continue
        parts = str(entry).split("/", 1)[0].rsplit(":", 2)
        assert len(parts) >= 2, f"port {entry!r} publishes no fixed host port"
        mapping[int(parts[-1])] = int(parts[-2])
    return mapping


def _mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every volume entry, short ("src:dst[:mode]") or long syntax."""
    mounts = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            mounts.append((str(entry.get("source", "")), str(entry["target"])))
        else:
            source, target = str(entry).split(":")[:2]
            mounts.append((source, target))
    return mounts


def _is_host_path(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def _host_path(source: str) -> Path:
    return (COMPOSE_FILE.parent / source).resolve()


def _host_dir_of(service: dict[str, Any], container_path: str) -> tuple[Path, PurePosixPath]:
    """The host path mounted at (or above) `container_path`, and the rest of the path below it."""
    wanted = PurePosixPath(container_path)
    best: tuple[Path, PurePosixPath] | None = None
    for source, target in _mounts(service):
        if not _is_host_path(source):
            continue
        mount = PurePosixPath(target)
        if wanted == mount or mount in wanted.parents:
            rest = wanted.relative_to(mount)
            if best is None or len(rest.parts) < len(best[1].parts):
                best = (_host_path(source), rest)
    assert best is not None, f"{container_path} is not mounted from the repository"
    return best


# --- the Compose file itself ----------------------------------------------------------------


def test_compose_has_the_services_with_pinned_images(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned to a version"


def test_compose_structure_is_valid(compose: dict[str, Any]) -> None:
    assert set(compose) <= COMPOSE_TOP_LEVEL, set(compose) - COMPOSE_TOP_LEVEL
    assert "version" not in compose  # obsolete in the Compose spec
    declared_volumes = set(compose.get("volumes") or {})
    used_volumes = set()
    for name, service in compose["services"].items():
        for key, value in (service.get("environment") or {}).items():
            assert isinstance(value, str), f"{name}: {key} must be a quoted string"
        for source, _ in _mounts(service):
            if not _is_host_path(source):
                assert source in declared_volumes, f"{name}: volume {source!r} not declared"
                used_volumes.add(source)
        for dependency in service.get("depends_on") or {}:
            assert dependency in compose["services"], f"{name} depends on unknown {dependency}"
        healthcheck = service.get("healthcheck")
        if healthcheck:
            assert healthcheck["test"][0] in ("CMD", "CMD-SHELL"), name
            for key in ("interval", "timeout", "start_period"):
                assert DURATION.match(str(healthcheck.get(key, "1s"))), f"{name}: {key}"
    assert used_volumes == declared_volumes


def test_every_mounted_host_path_exists(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for source, _ in _mounts(service):
            if _is_host_path(source):
                path = _host_path(source)
                assert path.exists(), f"{name} mounts {source}, missing"
                assert path.is_relative_to(ROOT), f"{name} mounts {source}, outside the repo"


def test_ports_are_local_and_leave_the_application_ports_free(
    services: dict[str, dict[str, Any]],
) -> None:
    host_ports: list[int] = []
    for name, service in services.items():
        for entry in service.get("ports", []):
            host_ip = entry.get("host_ip", "") if isinstance(entry, dict) else str(entry)
            assert host_ip.startswith("127.0.0.1"), f"{name}: {entry} is not loopback-only"
        host_ports.extend(_published(service).values())
    assert len(host_ports) == len(set(host_ports)), host_ports
    chemical_api_port = urlsplit(_default("chemical_api_url")).port
    assert _default("metrics_port") not in host_ports  # the application listens there
    assert chemical_api_port not in host_ports


# --- agreement with the application's defaults ----------------------------------------------


def test_kafka_is_where_the_default_bootstrap_servers_point(
    services: dict[str, dict[str, Any]],
) -> None:
    host, _, port = _default("kafka_bootstrap_servers").split(",")[0].rpartition(":")
    kafka = services["kafka"]
    env = kafka["environment"]
    advertised = dict(
        listener.split("://", 1) for listener in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    )
    assert advertised["PLAINTEXT"] == f"{host}:{port}"
    listeners = dict(listener.split("://", 1) for listener in env["KAFKA_LISTENERS"].split(","))
    container_port = int(listeners["PLAINTEXT"].rpartition(":")[2])
    assert _published(kafka)[container_port] == int(port)
    assert "CONTROLLER" in listeners and "CONTROLLER" not in advertised


def test_kafka_runs_single_node_kraft_like_infra_kafka_sh(
    services: dict[str, dict[str, Any]],
) -> None:
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NODE_ID"] == "1"
    # A KRaft cluster id is a URL-safe base64 UUID: 22 characters, 16 bytes.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(target == data_dir for _, target in _mounts(services["kafka"]))
    # The broker behaves as the one infra/kafka.sh starts (the tests and `make run` see the same).
    script = KAFKA_SCRIPT.read_text(encoding="utf-8")
    for prop in (
        "auto.create.topics.enable",
        "group.initial.rebalance.delay.ms",
        "num.partitions",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
    ):
        expected = re.search(rf"^{re.escape(prop)}=(.*)$", script, re.MULTILINE)
        assert expected, f"{prop} not in infra/kafka.sh"
        env_name = "KAFKA_" + prop.upper().replace(".", "_")
        assert env.get(env_name) == expected.group(1).strip(), env_name
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_postgres_matches_the_default_database_url(services: dict[str, dict[str, Any]]) -> None:
    url = urlsplit(_default("database_url"))
    postgres = services["postgres"]
    env = postgres["environment"]
    assert env["POSTGRES_USER"] == url.username
    assert env["POSTGRES_PASSWORD"] == url.password
    assert env["POSTGRES_DB"] == url.path.lstrip("/")
    assert _published(postgres)[5432] == (url.port or 5432)
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])


def test_postgres_init_script_creates_the_test_database(
    services: dict[str, dict[str, Any]],
) -> None:
    url = urlsplit(_default("database_url"))
    scripts = [
        (source, target)
        for source, target in _mounts(services["postgres"])
        if target.startswith("/docker-entrypoint-initdb.d/")
    ]
    assert scripts, "no init script mounted into /docker-entrypoint-initdb.d/"
    source, target = scripts[0]
    assert target.endswith(".sql")
    sql = _host_path(source).read_text(encoding="utf-8")
    test_db = url.path.lstrip("/") + "_test"  # as infra/postgres.sh and tests/support do
    assert re.search(rf"CREATE DATABASE {test_db} OWNER {url.username}\b", sql), sql


def test_smtp_publishes_the_default_smtp_port(services: dict[str, dict[str, Any]]) -> None:
    assert _default("smtp_host") in ("127.0.0.1", "localhost")
    assert _published(services["smtp"])[1025] == _default("smtp_port")


# --- Prometheus -----------------------------------------------------------------------------


def test_prometheus_scrapes_the_default_metrics_port(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    assert prometheus_config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in prometheus_config["scrape_configs"]}
    targets = [t for config in jobs["qchem-events"]["static_configs"] for t in config["targets"]]
    assert targets == [f"host.docker.internal:{_default('metrics_port')}"]
    assert "host.docker.internal:host-gateway" in services["prometheus"]["extra_hosts"]


def test_prometheus_config_and_rules_are_mounted(
    services: dict[str, dict[str, Any]], prometheus_config: dict[str, Any]
) -> None:
    prometheus = services["prometheus"]
    config_source, rest = _host_dir_of(prometheus, "/etc/prometheus/prometheus.yml")
    assert config_source / rest == PROMETHEUS_FILE.resolve()
    rule_files = prometheus_config["rule_files"]
    assert rule_files
    for pattern in rule_files:
        container_dir = PurePosixPath(pattern).parent
        host_dir, rest = _host_dir_of(prometheus, str(container_dir))
        host_dir = host_dir / rest
        assert host_dir.is_dir(), f"{pattern}: {host_dir} is not a directory"
        matched = [
            p for p in host_dir.iterdir() if fnmatch.fnmatch(p.name, PurePosixPath(pattern).name)
        ]
        assert matched, f"{pattern} matches no file in {host_dir}"
        for path in matched:
            rules = _load(path)
            assert isinstance(rules, dict) and isinstance(rules.get("groups"), list), path


# --- Grafana --------------------------------------------------------------------------------


def test_grafana_is_anonymous_admin_with_provisioning_mounted(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"
    source, rest = _host_dir_of(grafana, "/etc/grafana/provisioning")
    assert source / rest == GRAFANA_PROVISIONING.resolve()


def test_grafana_datasource_points_at_prometheus(services: dict[str, dict[str, Any]]) -> None:
    datasources = _load(GRAFANA_PROVISIONING / "datasources" / "prometheus.yml")
    assert datasources["apiVersion"] == 1
    (source,) = [d for d in datasources["datasources"] if d["uid"] == "prometheus"]
    assert source["type"] == "prometheus"
    prometheus_port = next(iter(_published(services["prometheus"])))
    assert source["url"] == f"http://prometheus:{prometheus_port}"


def test_grafana_dashboard_provider_loads_the_mounted_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    provider_file = _load(GRAFANA_PROVISIONING / "dashboards" / "qchem-events.yml")
    assert provider_file["apiVersion"] == 1
    (provider,) = provider_file["providers"]
    assert provider["type"] == "file"
    host_dir, rest = _host_dir_of(services["grafana"], provider["options"]["path"])
    assert (host_dir / rest).is_dir()
    assert host_dir / rest == (ROOT / "deploy" / "grafana" / "dashboards").resolve()


def test_registry_is_where_infra_registry_sh_puts_it(services: dict[str, dict[str, Any]]) -> None:
    # One SCHEMA_REGISTRY_URL for both ways of running it: Compose and the Maven-jar script.
    script = REGISTRY_SCRIPT.read_text(encoding="utf-8")
    port = int(re.search(r'PORT="\$\{QCHEM_REGISTRY_PORT:-(\d+)\}"', script).group(1))  # type: ignore[union-attr]
    version = re.search(r'VERSION="\$\{QCHEM_REGISTRY_VERSION:-([\d.]+)\}"', script).group(1)  # type: ignore[union-attr]
    assert _published(services["registry"]) == {8080: port}
    assert services["registry"]["image"] == f"apicurio/apicurio-registry:{version}"
