"""docker/compose.yml and the local launcher describe the same topology, and the engine's
parts run in it as the CLI and `civsync run` would run them, watched by its Prometheus."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from civsync import cli
from civsync.config import CivsyncSettings, load_settings
from civsync.runner import ROLES, kafka_part_env, metrics_ports
from civsync.runner import command as runner_command
from civsync.services import APICURIO_VERSION, KAFKA_VERSION
from tests.integration.conftest import COMPOSE_REGISTRY

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yml"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _host_port(mapping: str) -> int:
    """The host port of a compose mapping, with ``${VAR:-default}`` resolved to its default."""
    resolved = re.sub(r"\$\{[A-Z_]+:-(\d+)\}", r"\1", mapping)
    return int(resolved.split(":")[-2])


def test_services_listen_where_the_default_settings_look() -> None:
    services, defaults = _compose()["services"], CivsyncSettings()
    advertised = services["kafka"]["environment"]["CIVSYNC_KAFKA_ADVERTISED"].split(",")
    assert f"SASL_SSL://{defaults.kafka.bootstrap_servers}" in advertised
    assert _host_port(services["kafka"]["ports"][0]) == int(
        defaults.kafka.bootstrap_servers.split(":")[1]
    )
    assert _host_port(services["registry"]["ports"][0]) == defaults.registry.url.port
    compose_registry = COMPOSE_REGISTRY["CIVSYNC_REGISTRY__URL"]
    assert compose_registry.replace("http://", "https://") == str(defaults.registry.url)
    for name, store in defaults.stores().items():
        assert _host_port(services[name]["ports"][0]) == store.port
        assert f":-{store.dbname}}}" in services[name]["environment"]["POSTGRES_DB"]


def test_images_run_the_versions_the_launcher_runs() -> None:
    services = _compose()["services"]
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert services["registry"]["image"].endswith(f":{APICURIO_VERSION}")


def test_stores_decode_logically() -> None:
    for name in ("civil", "population"):
        assert "wal_level=logical" in _compose()["services"][name]["command"]


# --- the engine's parts as services, and their monitoring ---

METRICS_PORT_BASE = 9400  # the compose ports are those of `civsync run --metrics-port-base 9400`


def _command(args: list[str]) -> tuple[str, dict[str, Any]]:
    """The command `civsync ARGS` runs and its parameters, parsed by civsync's own CLI (an
    unknown command, option or value fails)."""
    command: Any = typer.main.get_command(cli.app)
    words = list(args)
    while hasattr(command, "commands"):  # a group: the next word names a command in it
        name = words.pop(0)
        assert name in command.commands, f"civsync has no command {name!r} ({args})"
        command = command.commands[name]
    return command.name, dict(command.make_context(command.name, words).params)


def _engine_environment(service: dict[str, Any]) -> dict[str, str]:
    """A part's environment with ``${VAR:-default}`` resolved to its default."""
    return {
        name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
        for name, value in service["environment"].items()
    }


def _conditions(service: dict[str, Any]) -> dict[str, str]:
    return {name: need["condition"] for name, need in service["depends_on"].items()}


def test_each_part_is_a_service_running_its_civsync_command() -> None:
    services = _compose()["services"]
    for role in ROLES:
        args = services[role]["command"]
        part = runner_command(role, None)[3:]  # after `python -m civsync.cli`
        assert args[: len(part)] == part, role
        _, params = _command(args)
        assert params["metrics_host"] == "0.0.0.0", role  # noqa: S104 - in its container
        assert params["metrics_port"] == metrics_ports(ROLES, METRICS_PORT_BASE)[role]
    assert _command(services["migrate"]["command"])[0] == "migrate"


def test_the_image_installs_the_package_whose_script_the_services_run() -> None:
    services, root = _compose()["services"], COMPOSE.parents[1]
    for name in (*ROLES, "migrate"):
        build = services[name]["build"]
        dockerfile = (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()
        assert dockerfile == root / "docker" / "civsync" / "Dockerfile"
    text = (root / "docker" / "civsync" / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --prefix=/install ." in text
    assert 'ENTRYPOINT ["civsync"]' in text
    assert "civsync = " in (root / "pyproject.toml").read_text()


def test_parts_reach_the_services_by_their_compose_names(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    kafka_env = services["kafka"]["environment"]
    inside = {a.split("//")[1] for a in kafka_env["CIVSYNC_KAFKA_ADVERTISED"].split(",")}
    registry_port = services["registry"]["ports"][0].split(":")[-1]
    for name in (*ROLES, "migrate", "kafka-users"):
        for variable, value in _engine_environment(services[name]).items():
            monkeypatch.setenv(variable, value)
        settings = load_settings(None)
        assert settings.kafka.bootstrap_servers in inside
        assert settings.kafka.bootstrap_servers.split(":")[0] == "kafka"
        assert settings.kafka.security_protocol == "SASL_SSL"
        ca = settings.kafka.ssl_ca_location
        assert ca is not None
        assert f"kafka-tls:{ca.parent}:ro" in services[name]["volumes"], name
        for store in settings.stores().values():
            assert store.sslmode == "require", name
        assert (settings.registry.url.host, str(settings.registry.url.port)) == (
            "registry",
            registry_port,
        )
        for store_name, store in settings.stores().items():
            assert (store.host, store.port) == (store_name, 5432)
            assert store.dbname == CivsyncSettings().stores()[store_name].dbname


def test_parts_start_after_what_they_need() -> None:
    services = _compose()["services"]
    started = {"kafka": "service_started", "registry": "service_started"}
    once = {"migrate": "service_completed_successfully"}
    once["kafka-users"] = "service_completed_successfully"
    for role in ROLES:
        needs = {**started, **once}
        store = role.partition("-")[2]
        if store:
            needs[store] = "service_healthy"
        assert _conditions(services[role]) == needs, role
    both = {"civil": "service_healthy", "population": "service_healthy"}
    assert _conditions(services["migrate"]) == both
    assert _conditions(services["kafka-users"]) == {"kafka": "service_started"}
    for one_shot in once:
        assert services[one_shot]["restart"] != "unless-stopped"
    assert _command(services["kafka-users"]["command"])[0] == "kafka-users"


def test_ports_health_checks_and_scrape_targets_agree() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((COMPOSE.parent / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    targets = {
        target: group["labels"]["service"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    ports = metrics_ports(ROLES, METRICS_PORT_BASE)
    assert targets == {f"{role}:{port}": role for role, port in ports.items()}
    for role, port in ports.items():
        assert services[role]["ports"] == [f"127.0.0.1:{port}:{port}"]
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(services[role]["healthcheck"]["test"])
    assert set(services["prometheus"]["depends_on"]) == set(ROLES)


def test_prometheus_and_grafana_mount_their_files() -> None:
    services, docker = _compose()["services"], COMPOSE.parent
    mounts = {}
    for name in ("prometheus", "grafana"):
        for volume in services[name]["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("./"):
                assert (docker / source).exists(), source
                mounts[target] = docker / source
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    for rules in config["rule_files"]:
        assert f"/etc/prometheus/{rules}" in mounts
    provisioning = mounts["/etc/grafana/provisioning"]
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "civsync.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "civsync.json").is_file()
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert source["url"] == f"http://prometheus:{prometheus_port}"


def test_the_engine_starts_only_with_its_profile() -> None:
    """`docker compose up` (what the tests' pytest-docker runs) starts the services only;
    the engine, Prometheus and Grafana need `--profile engine`."""
    services = _compose()["services"]
    plain = {name for name, service in services.items() if not service.get("profiles")}
    assert plain == {"kafka", "registry", "civil", "population"}
    assert all(s.get("profiles") == ["engine"] for n, s in services.items() if n not in plain)


def test_each_capture_and_sink_logs_in_with_the_role_migrate_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`migrate` (the owner) makes each part's role from its [roles] settings; the capture and
    sink containers log in to their store as exactly that role."""
    services = _compose()["services"]
    for variable, value in _engine_environment(services["migrate"]).items():
        monkeypatch.setenv(variable, value)
    roles = load_settings(None).roles
    for role, part, stores in (
        ("capture-civil", "capture", ("civil",)),
        ("capture-population", "capture", ("population",)),
        ("sink-civil", "sink_civil", ("civil",)),
        ("sink-population", "sink_population", ("population",)),
    ):
        with monkeypatch.context() as env:
            for variable, value in _engine_environment(services[role]).items():
                env.setenv(variable, value)
            settings = load_settings(None)
        for store in stores:
            login = settings.stores()[store]
            assert login.user == roles.of(part).user != CivsyncSettings().civil.user, role
            assert login.password == roles.of(part).password, role


def test_each_part_logs_in_to_kafka_as_the_user_kafka_users_makes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kafka-users` (as admin) makes each part's Kafka user from its [kafka_users] settings;
    each part's container logs in as exactly that user, as `civsync run` would start it."""
    services = _compose()["services"]
    for variable, value in _engine_environment(services["kafka-users"]).items():
        monkeypatch.setenv(variable, value)
    made = load_settings(None)
    assert made.kafka.sasl_username == "admin"
    for role in ROLES:
        with monkeypatch.context() as env:
            for variable, value in _engine_environment(services[role]).items():
                env.setenv(variable, value)
            part = load_settings(None).kafka
        wanted = kafka_part_env(made, role)
        assert part.sasl_username == wanted["CIVSYNC_KAFKA__SASL_USERNAME"] != "admin", role
        assert part.sasl_password is not None
        assert part.sasl_password.get_secret_value() == wanted["CIVSYNC_KAFKA__SASL_PASSWORD"]


def test_the_broker_runs_the_script_the_tests_run_with_names_its_clients_use() -> None:
    """compose's broker is docker/kafka/broker.sh (tests/integration/test_compose_broker.py
    runs it); its certificate names every host its listeners are advertised as, and its
    admin's password is the one the engine's admin steps use."""
    services = _compose()["services"]
    kafka = services["kafka"]
    script = kafka["entrypoint"][-1]
    (mount,) = [v for v in kafka["volumes"] if v.split(":")[1] == script]
    assert (
        COMPOSE.parent / mount.split(":")[0]
    ).resolve() == COMPOSE.parent / "kafka" / "broker.sh"
    names = kafka["environment"]["CIVSYNC_KAFKA_NAMES"].split(",")
    for listener in kafka["environment"]["CIVSYNC_KAFKA_ADVERTISED"].split(","):
        host = listener.split("//")[1].rsplit(":", 1)[0]
        assert f"ip:{host}" in names or f"dns:{host}" in names, host
    engine = _engine_environment(services["kafka-users"])
    broker = _engine_environment(kafka)
    assert broker["CIVSYNC_KAFKA_ADMIN_PASSWORD"] == engine["CIVSYNC_KAFKA__SASL_PASSWORD"]
