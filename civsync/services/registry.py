"""Apicurio Registry (Confluent-compatible API under /apis/ccompat/v7) from Maven Central.

Apicurio 2.6 is the newest line that runs on Java 17 (3.x needs Java 21). Its ``all``
archive stores schemas in an H2 database; we point that at a file under the run directory
so schema ids survive a restart, as the ids inside messages already on Kafka require.
It serves HTTPS only (Quarkus' ``quarkus.http.ssl``, its plain HTTP port not opened), with
a self-signed certificate made at its first start (``civsync.services.tls``), unless
``[registry] url`` says ``http://`` (explicit local development).
"""

from __future__ import annotations

import shutil
import ssl
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from civsync.services.maven import Artifact, resolve
from civsync.services.process import ManagedProcess, require_free_port
from civsync.services.tls import self_signed, write_private

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
    """Owns ``<run>/registry``: the unpacked application, its H2 data, logs, and its TLS
    key and certificate (``tls/``; ``ca.crt`` is the copy clients verify it with)."""

    root: Path
    host: str
    port: int
    heap: str = "384m"
    tls: bool = True

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.crt"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

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
        env = {
            "QUARKUS_HTTP_HOST": self.host,
            "QUARKUS_HTTP_PORT": str(self.port),
            "REGISTRY_DATASOURCE_URL": f"jdbc:h2:file:{self.root / 'data' / 'registry'}",
            "QUARKUS_LOG_CONSOLE_JSON": "false",
        }
        if self.tls:
            key, certificate = self._ensure_tls()
            env |= {
                "QUARKUS_HTTP_SSL_PORT": str(self.port),
                "QUARKUS_HTTP_INSECURE_REQUESTS": "disabled",  # no plain HTTP port at all
                "QUARKUS_HTTP_SSL_CERTIFICATE_FILES": str(certificate),
                "QUARKUS_HTTP_SSL_CERTIFICATE_KEY_FILES": str(key),
            }
        self.process.start(
            ["java", f"-Xmx{self.heap}", "-jar", str(runner), f"-Dcivsync.run={self.root}"],
            env=env,
        )
        self._serving.write_text(self.url)

    @property
    def _serving(self) -> Path:
        return self.root / "serving"

    def serves_as_asked(self) -> bool:
        """Whether the running registry was started for this URL (https or http): one
        started before TLS, or for the other scheme, must be restarted."""
        return self._serving.is_file() and self._serving.read_text() == self.url

    def healthy(self) -> bool:
        """Whether it answers ready; over TLS, verifying it with ``ca_file``."""
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        try:
            ready = f"{self.url}/health/ready"  # http(s) to its loopback address
            with urllib.request.urlopen(ready, timeout=2, context=context) as response:  # noqa: S310
                return bool(response.status == 200)  # noqa: PLR2004
        except OSError:
            return False

    def _ensure_tls(self) -> tuple[Path, Path]:
        """The key (0600) and self-signed certificate, made once; ``ca.crt`` its copy."""
        tls = self.root / "tls"
        key, certificate = tls / "server.key", tls / "server.crt"
        if not key.is_file():
            tls.mkdir(parents=True, exist_ok=True)
            tls.chmod(0o700)
            key_pem, cert_pem = self_signed(self.host, "civsync local schema registry")
            write_private(key, key_pem)
            certificate.write_bytes(cert_pem)
        shutil.copyfile(certificate, self.ca_file)
        return key, certificate

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
