"""docker/compose.yml and the local launcher describe the same topology."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from civsync.config import CivsyncSettings
from civsync.services import APICURIO_VERSION, KAFKA_VERSION

COMPOSE = Path(__file__).resolve().parents[2] / "docker" / "compose.yml"


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _host_port(mapping: str) -> int:
    """The host port of a compose mapping, with ``${VAR:-default}`` resolved to its default."""
    resolved = re.sub(r"\$\{[A-Z_]+:-(\d+)\}", r"\1", mapping)
    return int(resolved.split(":")[-2])


def test_services_listen_where_the_default_settings_look() -> None:
    services, defaults = _compose()["services"], CivsyncSettings()
    kafka_env = services["kafka"]["environment"]
    assert kafka_env["KAFKA_ADVERTISED_LISTENERS"] == (
        f"PLAINTEXT://{defaults.kafka.bootstrap_servers}"
    )
    assert _host_port(services["registry"]["ports"][0]) == defaults.registry.url.port
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
