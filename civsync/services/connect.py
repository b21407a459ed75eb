"""A Kafka Connect standalone worker with stock plugins, built from Maven Central jars.

Used by the benchmarks (Debezium's PostgreSQL source and JDBC sink against civsync) and by
the integration test that a stock reader takes civsync's topics (the JDBC sink with Apicurio's
Avro converter). It is not part of civsync's runtime: nothing in the engine starts it.

Owns a home directory (``<run>/connect``): the worker runtime (``connect-runtime`` 4.1.1 with
its dependencies), a ``plugin.path`` with one directory per plugin (Debezium's PostgreSQL
source, Debezium's JDBC sink, Apicurio's Connect converter; each with its own dependencies),
and one work directory per worker (config, offsets file, log). Everything is resolved with
``mvn`` through civsync's Maven helper and cached, so a second start needs no network.

The worker's default converters are JSON *with schemas enabled* on keys and values (what
the benchmarks' Debezium connectors write and read, without a registry). A connector that
reads civsync's topics overrides them with ``avro_converters`` (Apicurio's ``AvroConverter``
reading the Confluent wire format that civsync writes).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from civsync.services.kafka import properties_line
from civsync.services.maven import Artifact, resolve
from civsync.services.process import run_checked
from civsync.services.registry import APICURIO_VERSION
from connectors.settings import KafkaSettings, RegistrySettings

CONNECT_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.6.0.Final"
LOG4J_VERSION = "2.24.3"
PGJDBC_VERSION = "42.7.11"
HIBERNATE_VERSION = "7.2.19.Final"
JACKSON_VERSION = "2.21.2"
# Apicurio's converter at the registry's own version (its v2 client and id handling fit it).
APICURIO_CONVERTER_VERSION = APICURIO_VERSION
# The Jackson of the converter's serdes (jackson-core 2.17.2); its connect-json, which
# brought databind, is left out with the rest of Kafka.
APICURIO_JACKSON_VERSION = "2.17.2"
AVRO_CONVERTER = "io.apicurio.registry.utils.converter.AvroConverter"

# a truststore holds only a public certificate: its password guards nothing secret
_TRUSTSTORE_PASSWORD = "civsync-truststore"  # noqa: S105
_RUNTIME = [
    Artifact("org.apache.kafka", name, CONNECT_VERSION)
    for name in ("connect-runtime", "connect-json", "connect-api", "connect-transforms")
] + [Artifact("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION)]

_PLUGINS = {
    "debezium-postgres": [Artifact("io.debezium", "debezium-connector-postgres", DEBEZIUM_VERSION)],
    # The sink's own pom names org.hibernate:hibernate-agroal 7.2.6, which Maven Central lacks
    # (only the org.hibernate.orm coordinates of 7.2.19 are there), and drivers for four other
    # databases: its jar comes without dependencies, and those it needs are listed here.
    "debezium-jdbc": [
        Artifact("io.debezium", "debezium-connector-jdbc", DEBEZIUM_VERSION, transitive=False),
        *(
            Artifact("io.debezium", name, DEBEZIUM_VERSION)
            for name in ("debezium-connector-common", "debezium-sink", "debezium-connect-plugins")
        ),
        Artifact("org.hibernate.orm", "hibernate-core", HIBERNATE_VERSION),
        Artifact("org.hibernate.orm", "hibernate-agroal", HIBERNATE_VERSION),
        Artifact("org.postgresql", "postgresql", PGJDBC_VERSION),
        # Hibernate loads every Jackson module named in META-INF/services, the worker's too;
        # the worker's (2.19) do not fit the plugin's Jackson (2.21), so the plugin gets its own.
        Artifact("com.fasterxml.jackson.datatype", "jackson-datatype-jdk8", JACKSON_VERSION),
        *(
            Artifact("com.fasterxml.jackson.module", name, JACKSON_VERSION)
            for name in ("jackson-module-blackbird", "jackson-module-jakarta-xmlbind-annotations")
        ),
    ],
    # Apicurio's converter depends on Kafka 3.9's connect-api, connect-json and clients. Connect
    # loads org.apache.kafka.connect.json from a plugin before its own, and would then find a
    # second JsonConverter, so Kafka's jars are left out (the worker has them) and Jackson's
    # databind, which connect-json brought, is named instead.
    "apicurio-converter": [
        Artifact(
            "io.apicurio",
            "apicurio-registry-utils-converter",
            APICURIO_CONVERTER_VERSION,
            exclude=tuple(
                f"org.apache.kafka:{name}"
                for name in ("connect-api", "connect-json", "kafka-clients")
            ),
        ),
        Artifact("com.fasterxml.jackson.core", "jackson-databind", APICURIO_JACKSON_VERSION),
    ],
}

# The converter's jar has no META-INF/services entry, and a worker with
# plugin.discovery=service_load finds only plugins that have one: this jar adds it.
_SERVICES = {
    "apicurio-converter": {
        "org.apache.kafka.connect.storage.Converter": [AVRO_CONVERTER],
    },
}

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.isolation.name = org.apache.kafka.connect.runtime.isolation
logger.isolation.level = WARN
logger.config.name = org.apache.kafka.common.config.AbstractConfig
logger.config.level = WARN
"""


class ConnectError(RuntimeError):
    """The worker did not start, or a connector failed."""


def runtime(home: Path) -> Path:
    """The directory of the worker's jars (resolved once, then cached)."""
    return resolve(f"connect-{CONNECT_VERSION}", _RUNTIME, home / f"runtime-{CONNECT_VERSION}")


def tools(home: Path) -> Path:
    """The directory of Kafka's command-line tools (``kafka-tools``: ``TopicCommand``,
    ``ProducerPerformance``), resolved once, then cached."""
    artifacts = [Artifact("org.apache.kafka", "kafka-tools", CONNECT_VERSION)]
    return resolve(f"kafka-tools-{CONNECT_VERSION}", artifacts, home / f"tools-{CONNECT_VERSION}")


def plugin_path(home: Path) -> Path:
    """A plugin.path with one directory per plugin (resolved once, then cached)."""
    root = home.resolve() / "plugins"
    for name, artifacts in _PLUGINS.items():
        target = resolve(f"{name}-plugin", artifacts, root / name)
        services = _SERVICES.get(name)
        if services:
            _service_jar(target / "lib" / "civsync-plugin-services.jar", services)
    return root


def _service_jar(path: Path, services: dict[str, list[str]]) -> None:
    """A jar holding only ``META-INF/services`` entries (rewritten only if they changed)."""
    wanted = {
        f"META-INF/services/{kind}": "\n".join(names) + "\n" for kind, names in services.items()
    }
    if path.is_file():
        with zipfile.ZipFile(path) as jar:
            if {name: jar.read(name).decode() for name in jar.namelist()} == wanted:
                return
    with zipfile.ZipFile(path, "w") as jar:
        for name, text in wanted.items():
            jar.writestr(name, text)


def avro_converters(registry: RegistrySettings, home: Path) -> dict[str, str]:
    """Connector settings that read civsync's topics, keys and values, with Apicurio's
    ``AvroConverter``: the Confluent wire format (magic byte, 4-byte id, no headers), the id
    being Apicurio's content id (what its ccompat API hands out), fetched over its v2 API
    (only the URL's scheme and host are used). Over https it verifies the registry with
    ``ssl_ca_location``, made a PKCS12 truststore in ``home`` (the Java client reads no PEM)."""
    parts = urlsplit(str(registry.url))
    settings = {
        "apicurio.registry.url": f"{parts.scheme}://{parts.netloc}/apis/registry/v2",
        "apicurio.registry.as-confluent": "true",
        "apicurio.registry.headers.enabled": "false",
        "apicurio.registry.use-id": "contentId",
    }
    if registry.uses_tls and registry.ssl_ca_location is not None:
        truststore = home.resolve() / "registry-truststore.p12"
        settings |= {
            "apicurio.registry.request.ssl.truststore.location": str(truststore),
            "apicurio.registry.request.ssl.truststore.type": "PKCS12",
            "apicurio.registry.request.ssl.truststore.password": _TRUSTSTORE_PASSWORD,
        }
        _pkcs12_truststore(registry.ssl_ca_location, truststore)
    config: dict[str, str] = {}
    for side in ("key", "value"):
        config[f"{side}.converter"] = AVRO_CONVERTER
        config |= {f"{side}.converter.{name}": value for name, value in settings.items()}
    return config


def _pkcs12_truststore(ca: Path, target: Path) -> None:
    """``ca`` as the one trusted certificate of a PKCS12 truststore (keytool's: a Java
    client trusts only the certificates keytool marks so), made afresh."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    run_checked(
        [
            "keytool",
            "-importcert",
            "-noprompt",
            "-alias",
            "ca",
            "-file",
            str(ca),
            "-storetype",
            "PKCS12",
            "-keystore",
            str(target),
            "-storepass",
            _TRUSTSTORE_PASSWORD,
        ],
        what="making a truststore for the registry's CA",
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _client_lines(kafka: KafkaSettings) -> list[str]:
    """``kafka``'s connection and login for the worker and for its connectors' producers,
    consumers and admin clients (each reads its own prefix), as properties-file lines."""
    properties = kafka.java_properties()
    return [
        properties_line(f"{prefix}{key}", value)
        for prefix in ("", "producer.", "consumer.", "admin.")
        for key, value in properties.items()
    ]


class ConnectWorker:
    """One ConnectStandalone process with REST on a free loopback port; a context manager.
    ``home`` holds the runtime, the plugins and ``workers/<name>``."""

    def __init__(self, kafka: KafkaSettings, name: str, *, home: Path, heap: str = "512m") -> None:
        self.kafka, self.home, self.heap = kafka, home.resolve(), heap
        self.workdir = self.home / "workers" / name
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "connect.log"

    def __enter__(self) -> ConnectWorker:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if error is None:  # a failed run keeps its config and log for a look
            shutil.rmtree(self.workdir, ignore_errors=True)

    def start(self, timeout_s: float = 180.0) -> float:
        """Start the worker and wait until its REST API answers; seconds it took."""
        lib, plugins = runtime(self.home) / "lib", plugin_path(self.home)
        java = shutil.which("java")
        if java is None:
            raise ConnectError("java is not installed")
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        self.port = _free_port()
        config = self.workdir / "worker.properties"
        config.write_text(
            "\n".join(
                [
                    *_client_lines(self.kafka),
                    "key.converter=org.apache.kafka.connect.json.JsonConverter",
                    "value.converter=org.apache.kafka.connect.json.JsonConverter",
                    "key.converter.schemas.enable=true",
                    "value.converter.schemas.enable=true",
                    f"offset.storage.file.filename={self.workdir / 'offsets'}",
                    "offset.flush.interval.ms=1000",
                    f"listeners=http://127.0.0.1:{self.port}",
                    f"plugin.path={plugins}",
                    "plugin.discovery=service_load",
                    "connector.client.config.override.policy=All",
                    "",
                ]
            )
        )
        log4j = self.workdir / "log4j2.properties"
        log4j.write_text(_LOG4J2.format(log=self.log))
        argv = [
            java,
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{lib}/*",
            "org.apache.kafka.connect.cli.ConnectStandalone",
            str(config),
        ]
        with (self.workdir / "stdout.log").open("ab") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        started = time.monotonic()
        while True:
            if self.process.poll() is not None:
                raise ConnectError(f"Connect worker exited; see {self.workdir}:\n{self._tail()}")
            try:
                self._call("GET", "/connectors")
                return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() - started > timeout_s:
                self.stop()
                raise ConnectError(f"Connect REST did not answer in {timeout_s} s:\n{self._tail()}")
            time.sleep(0.5)

    def _tail(self, lines: int = 20) -> str:
        """The last lines of the worker's output and log, to say why it did not start."""
        tails = []
        for path in (self.workdir / "stdout.log", self.log):
            if path.is_file():
                tails += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(tails) or "(no output)"

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM (Connect stops its connectors and flushes offsets), SIGKILL after a wait."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - a loopback http URL we built
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            payload = response.read()
        return json.loads(payload) if payload else None

    def create(self, name: str, config: dict[str, str]) -> None:
        """Create connector ``name``; ConnectError with Connect's reason if it refuses it (a
        class that no plugin provides, a config that does not validate)."""
        try:
            self._call("POST", "/connectors", {"name": name, "config": config})
        except urllib.error.HTTPError as error:
            reason = error.read().decode(errors="replace")[:2000]
            raise ConnectError(f"creating connector {name}: HTTP {error.code}: {reason}") from None

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/connectors/{name}/status")
        return result

    def wait_running(self, name: str, timeout_s: float = 120.0) -> None:
        """Until the connector and every task run; ConnectError with the trace if one failed."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                state = self.status(name)
            except urllib.error.HTTPError:
                state = {}
            self.check(name, state)
            tasks = state.get("tasks", [])
            if (
                state.get("connector", {}).get("state") == "RUNNING"
                and tasks
                and all(t["state"] == "RUNNING" for t in tasks)
            ):
                return
            time.sleep(0.2)
        raise ConnectError(f"connector {name} not running after {timeout_s} s")

    def check(self, name: str, state: dict[str, Any] | None = None) -> None:
        """ConnectError if the connector or one of its tasks has failed."""
        state = state if state is not None else self.status(name)
        for part in [state.get("connector", {}), *state.get("tasks", [])]:
            if part.get("state") == "FAILED":
                raise ConnectError(f"{name} failed: {part.get('trace', '')[:2000]}")

    def pause(self, name: str) -> None:
        """Stop the connector's tasks, keeping its config and offsets (PUT .../stop)."""
        self._call("PUT", f"/connectors/{name}/stop")

    def resume(self, name: str) -> None:
        self._call("PUT", f"/connectors/{name}/resume")

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/connectors/{name}")
