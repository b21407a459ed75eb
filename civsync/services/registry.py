"""Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7) from Maven Central.

Apicurio 2.6 is the newest line that runs on Java 17 (3.x needs Java 21). Its ``all``
archive stores schemas in an H2 database; we point that at a file under the run directory
so schema ids survive a restart, as the ids inside messages already on Kafka require.
"""

from __future__ import annotations

import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from civsync.services.maven import Artifact, resolve
from civsync.services.process import ManagedProcess, require_free_port

APICURIO_VERSION = "2.6.13.Final"
# The archive is self-contained: its own lib/ holds every dependency.
_ARCHIVE = Artifact(
    "io.apicurio",
    "apicurio-registry-app",
    APICURIO_VERSION,
    classifier="all",
    type="tar.gz",
    transitive=False,
)


@dataclass(frozen=True)
class RegistryService:
    """Owns ``<run>/registry``: the unpacked application, its H2 data and logs."""

    root: Path
    host: str
    port: int
    heap: str = "384m"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            "schema registry",
            self.root / "registry.pid",
            self.root / "logs" / "registry.log",
            str(self.root),
        )

    def start(self) -> None:
        require_free_port("the schema registry", self.host, self.port)
        runner = self._unpacked()
        self.process.start(
            ["java", f"-Xmx{self.heap}", "-jar", str(runner), f"-Dcivsync.run={self.root}"],
            env={
                "QUARKUS_HTTP_HOST": self.host,
                "QUARKUS_HTTP_PORT": str(self.port),
                "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{self.root / 'data' / 'registry'}",
                "QUARKUS_LOG_CONSOLE_JSON": "false",
            },
        )

    def healthy(self) -> bool:
        url = f"http://{self.host}:{self.port}/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)  # noqa: PLR2004
        except OSError:
            return False

    def _unpacked(self) -> Path:
        app = self.root / f"app-{APICURIO_VERSION}"
        runner = app / f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
        if runner.is_file():
            return runner
        dist = resolve(f"apicurio-{APICURIO_VERSION}", [_ARCHIVE], self.root / "dist")
        archive = next((dist / "lib").glob("apicurio-registry-app-*-all.tar.gz"))
        with tarfile.open(archive) as tar:
            tar.extractall(app, filter="data")
        shutil.rmtree(dist)  # ~/.m2 keeps the archive; the unpacked copy is all we run
        return runner
