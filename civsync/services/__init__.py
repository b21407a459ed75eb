"""Local services without Docker: Kafka (KRaft), the schema registry and two PostgreSQL stores.

``LocalServices.up`` is idempotent: it installs what is missing (jars from Maven Central,
cached), starts what is not running, and returns only when every service answers its health
probe. Everything lives under one run directory (``.run`` by default, git-ignored).
Endpoints come from ``CivsyncSettings``, so the launcher, the tests and civsync itself agree.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from civsync.config import CivsyncSettings
from civsync.services.kafka import (
    ADMIN_USER,
    KAFKA_VERSION,
    SECURE_PORT_OFFSET,
    KafkaService,
)
from civsync.services.postgres import PostgresService, cluster_root
from civsync.services.process import LauncherError, ManagedProcess
from civsync.services.registry import APICURIO_VERSION, RegistryService
from connectors.settings import DEVELOPMENT_ADMIN_PASSWORD

__all__ = ["APICURIO_VERSION", "KAFKA_VERSION", "LauncherError", "LocalServices"]

START_TIMEOUT_S = 120.0


class _JvmService(Protocol):
    """Kafka and the registry: a java process the launcher starts and probes."""

    @property
    def process(self) -> ManagedProcess: ...
    def start(self) -> None: ...
    def healthy(self) -> bool: ...


@dataclass(frozen=True)
class ServiceState:
    name: str
    endpoint: str
    running: bool
    healthy: bool


@dataclass(frozen=True)
class LocalServices:
    """The four local services described by ``settings``, rooted at ``run_dir``."""

    run_dir: Path
    settings: CivsyncSettings

    def kafka(self) -> KafkaService:
        """The broker ``[kafka]`` names: by its SASL_SSL listener (``port + 2``), or by its
        PLAINTEXT one, which it then opens. admin's password is ``[kafka]``'s when
        ``[kafka]`` logs in as admin, else the development default."""
        kafka = self.settings.kafka
        host, port = _loopback("kafka", kafka.bootstrap_servers.split(",")[0])
        plaintext = kafka.security_protocol == "PLAINTEXT"
        password = kafka.sasl_password if kafka.sasl_username == ADMIN_USER else None
        return KafkaService(
            self.run_dir / "kafka",
            host,
            port if plaintext else port - SECURE_PORT_OFFSET,
            admin_password=password or DEVELOPMENT_ADMIN_PASSWORD,
            plaintext=plaintext,
        )

    def registry(self) -> RegistryService:
        """The registry ``[registry] url`` names: HTTPS only, or plain HTTP for an
        ``http://`` URL."""
        registry = self.settings.registry
        host, port = _loopback("registry", urlsplit(str(registry.url)).netloc)
        return RegistryService(self.run_dir / "registry", host, port, tls=registry.uses_tls)

    def stores(self) -> list[PostgresService]:
        for name, store in self.settings.stores().items():
            _loopback(name, f"{store.host}:{store.port}")
        return [
            PostgresService(name, cluster_root(self.run_dir, name), store)
            for name, store in self.settings.stores().items()
        ]

    def up(self, progress: Callable[[str], None] = lambda _: None) -> dict[str, float]:
        """Start whatever is not running; seconds until each service was healthy."""
        started = time.monotonic()
        with self._locked():
            for store in self.stores():
                if not store.running():
                    progress(f"starting PostgreSQL ({store.name}) on port {store.store.port}")
                    store.start()
            jvm = self._jvm_services()
            registry = self.registry()
            if registry.process.pid() is not None and not registry.serves_as_asked():
                progress(f"restarting the schema registry to serve {registry.url}")
                registry.process.stop()
            for name, service in jvm.items():
                if service.process.pid() is None:
                    progress(f"starting {name}")
                    service.start()
            timings = {s.name: time.monotonic() - started for s in self.stores()}
            for name, service in jvm.items():  # both JVMs warm up at once; wait for each
                service.process.wait_healthy(service.healthy, START_TIMEOUT_S)
                timings[name] = time.monotonic() - started
                progress(f"{name} healthy after {timings[name]:.1f}s")
            kafka = self.kafka()
            if kafka.adopt_admin_password():  # formatted with a random one
                progress("set Kafka's admin password to the settings' one; restarting Kafka")
                kafka.process.stop()  # its own connections log in with the new one too
                kafka.start()
                kafka.process.wait_healthy(kafka.healthy, START_TIMEOUT_S)
        return timings

    def down(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Stop every service; data stays for the next ``up``."""
        with self._locked():
            for name, service in reversed(self._jvm_services().items()):
                if service.process.stop():
                    progress(f"stopped {name}")
            for store in self.stores():
                if store.stop():
                    progress(f"stopped PostgreSQL ({store.name})")

    def status(self) -> list[ServiceState]:
        kafka, registry = self.kafka(), self.registry()
        states = [
            ServiceState(
                "kafka", kafka.bootstrap, kafka.process.pid() is not None, kafka.healthy()
            ),
            ServiceState(
                "registry",
                str(self.settings.registry.url),
                registry.process.pid() is not None,
                registry.healthy(),
            ),
        ]
        states += [
            ServiceState(
                s.name, f"{s.store.host}:{s.store.port}/{s.store.dbname}", s.running(), s.healthy()
            )
            for s in self.stores()
        ]
        return states

    def _jvm_services(self) -> dict[str, _JvmService]:
        return {"kafka": self.kafka(), "registry": self.registry()}

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir.chmod(0o755)
        with (self.run_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield


def _loopback(name: str, host_port: str) -> tuple[str, int]:
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        is_loopback = host == "localhost" or ip_address(host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback or not port.isdigit():
        raise LauncherError(
            f"the local launcher only starts services on loopback; {name} is set to {host_port!r}"
        )
    return host, int(port)
