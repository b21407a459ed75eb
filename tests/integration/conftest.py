"""Real services for integration tests: Kafka, the schema registry, two PostgreSQL stores.

Endpoints are taken, in order, from: CIVSYNC_* environment variables; a Docker engine via
pytest-docker and docker/compose.yml; otherwise the local launcher (``civsync services up``).
A service that does not come up fails the session; nothing here skips.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from civsync.config import CivsyncSettings, load_settings
from civsync.services import LocalServices
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import Connection, connect
from connectors.registry import SchemaRegistry
from tests.integration.profile_support import profile  # noqa: F401 - a fixture for the tests

ROOT = Path(__file__).resolve().parents[2]
RUN_DIR = Path(os.environ.get("CIVSYNC_RUN_DIR", ROOT / ".run"))
# docker/compose.yml's registry serves plain HTTP (its broker and stores are secured as the
# launcher's; docs/security.md)
COMPOSE_REGISTRY = {"CIVSYNC_REGISTRY__URL": "http://127.0.0.1:8081/apis/ccompat/v7"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


def _mode() -> str:
    if os.environ.get("CIVSYNC_KAFKA__BOOTSTRAP_SERVERS"):
        return "environment"
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=20)
        if probe.returncode == 0:
            return "docker"
    return "local"


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(ROOT / "docker" / "compose.yml")


@pytest.fixture(scope="session")
def services_mode() -> str:
    return _mode()


@pytest.fixture(scope="session")
def settings(request: pytest.FixtureRequest, services_mode: str) -> Iterator[CivsyncSettings]:
    """The services' settings: by default, the local services, Kafka reached over its SASL_SSL
    listener as ``admin`` (each engine part of a test's pipeline logs in as its own user:
    ``merge_support.pipeline``); compose's broker (docker/compose.yml) the same way: the same
    address and admin, its CA file copied out of its container to where the settings look;
    compose's registry over plain HTTP (``COMPOSE_REGISTRY``)."""
    if services_mode == "local":
        settings = load_settings()
        LocalServices(RUN_DIR, settings).up()
        yield settings
        return
    with pytest.MonkeyPatch.context() as env:
        if services_mode == "docker":  # every civsync process the tests start, too
            for name, value in COMPOSE_REGISTRY.items():
                env.setenv(name, value)
        settings = load_settings()
        local = LocalServices(RUN_DIR, settings)
        probes = [local.kafka().healthy, local.registry().healthy]
        probes += [store.healthy for store in local.stores()]
        if services_mode == "docker":
            docker = request.getfixturevalue("docker_services")
            compose = (
                request.getfixturevalue("docker_compose_file"),
                request.getfixturevalue("docker_compose_project_name"),
            )
            copied = partial(_compose_ca, *compose, local.kafka().ca_file)
            docker.wait_until_responsive(check=copied, timeout=180.0, pause=1.0)
            for probe in probes:
                docker.wait_until_responsive(check=probe, timeout=180.0, pause=1.0)
        unhealthy = [probe.__self__ for probe in probes if not probe()]  # type: ignore[attr-defined]
        assert not unhealthy, f"services from the environment are not healthy: {unhealthy}"
        yield settings


def _compose_ca(compose_file: str, project: str, target: Path) -> bool:
    """Copy compose's Kafka CA file out of its container to ``target``; False until the
    broker's first start has made it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    copied = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            compose_file,
            "-p",
            project,
            "cp",
            "kafka:/etc/kafka/secrets/ca.crt",
            str(target),
        ],
        capture_output=True,
        check=False,
        timeout=60,
    )
    return copied.returncode == 0


@pytest.fixture
def unique_name(request: pytest.FixtureRequest, settings: CivsyncSettings) -> Iterator[str]:
    """A name no other test (or earlier run) uses: for topics, slots, subjects, groups.

    The topics whose names contain it are deleted afterwards, unless CIVSYNC_KEEP_TOPICS is
    set: hundreds of leftover topics keep a development broker busy and skew benchmarks."""
    test = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"it_{test}_{uuid.uuid4().hex[:8]}"
    yield name
    if not os.environ.get("CIVSYNC_KEEP_TOPICS"):
        admin = TopicAdmin(settings.kafka)
        admin.delete([topic for topic in admin.names() if name in topic])


@pytest.fixture
def civil(settings: CivsyncSettings) -> Iterator[Connection]:
    """An autocommit connection to the civil-status store."""
    with connect(settings.civil, autocommit=True) as conn:
        yield conn


@pytest.fixture
def topic_admin(settings: CivsyncSettings) -> TopicAdmin:
    return TopicAdmin(settings.kafka)


@pytest.fixture
def registry(settings: CivsyncSettings) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(settings.registry) as client:
        yield client


@pytest.fixture
def fresh_topics(topic_admin: TopicAdmin) -> Iterator[list[str]]:
    """Topic names a test creates; deleted afterwards unless CIVSYNC_KEEP_TOPICS is set."""
    created: list[str] = []
    yield created
    if not os.environ.get("CIVSYNC_KEEP_TOPICS"):
        topic_admin.delete(created)


@pytest.fixture
def population(settings: CivsyncSettings) -> Iterator[Connection]:
    """An autocommit connection to the population store."""
    with connect(settings.population, autocommit=True) as conn:
        yield conn
