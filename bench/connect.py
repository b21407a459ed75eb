"""A Kafka Connect standalone worker for benchmarks, built from Maven Central jars.

Owns ``.run/bench-connect/``: the worker runtime (``connect-runtime`` 4.1.1 with its
dependencies), a ``plugin.path`` holding Debezium's PostgreSQL source and JDBC sink (each with
its own dependencies, one directory per plugin), and one work directory per worker (config,
offsets file, log). Everything is resolved with ``mvn`` through civsync's own Maven helper and
cached, so a second start needs no network.

Converters are JSON *with schemas enabled* on keys and values: Debezium's JDBC sink needs the
schema in every record to map fields to columns, and JSON needs no registry. civsync publishes
Avro, so Debezium's records are larger on the wire; the figures say so.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from civsync.services.maven import Artifact, resolve

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".run" / "bench-connect"
CONNECT_VERSION = "4.1.1"
DEBEZIUM_VERSION = "3.6.0.Final"
LOG4J_VERSION = "2.24.3"
PGJDBC_VERSION = "42.7.11"
HIBERNATE_VERSION = "7.2.19.Final"
JACKSON_VERSION = "2.21.2"

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


def runtime() -> Path:
    """The directory of the worker's jars (resolved once, then cached)."""
    return resolve(f"connect-{CONNECT_VERSION}", _RUNTIME, HOME / f"runtime-{CONNECT_VERSION}")


def plugin_path() -> Path:
    """A plugin.path with one directory per Debezium connector (resolved once, then cached)."""
    root = HOME / f"plugins-debezium-{DEBEZIUM_VERSION}"
    for name, artifacts in _PLUGINS.items():
        resolve(f"{name}-{DEBEZIUM_VERSION}", artifacts, root / name)
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ConnectWorker:
    """One ConnectStandalone process with REST on a free loopback port; a context manager."""

    def __init__(self, bootstrap: str, name: str, heap: str = "512m") -> None:
        self.bootstrap, self.heap = bootstrap, heap
        self.workdir = HOME / "workers" / name
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "connect.log"

    def __enter__(self) -> ConnectWorker:
        self.start()
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
        lib, plugins = runtime() / "lib", plugin_path()
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
                    f"bootstrap.servers={self.bootstrap}",
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
                raise ConnectError(f"Connect worker exited; see {self.workdir}")
            try:
                self._call("GET", "/connectors")
                return time.monotonic() - started
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() - started > timeout_s:
                raise ConnectError(f"Connect REST did not answer in {timeout_s} s")
            time.sleep(0.5)

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
        self._call("POST", "/connectors", {"name": name, "config": config})

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
