"""A single-node Apache Kafka broker in KRaft mode, from Maven Central jars, on loopback.

Two client listeners (docs/security.md, Kafka):

- ``PLAINTEXT`` on ``port``, for explicit local development only: no TLS, no login; its
  clients are ``User:ANONYMOUS``, a super user, so most tests and the benchmarks work as
  before. Never expose it beyond loopback.
- ``SASL_SSL`` on ``port + 2`` (``port + 1`` is the controller's): TLS with a certificate
  made once in ``<root>/tls`` (clients verify it with ``<root>/ca.crt`` as their
  ``ssl.ca.location``) and SCRAM-SHA-512 logins. ``admin`` (password in ``<root>/admin.password``,
  mode 0600) is a super user, created when the storage is formatted; every other user and
  its ACLs come from ``civsync kafka-users`` (``connectors.kafka.security``). The demo's
  engine uses this listener (``admin_settings``).

The StandardAuthorizer checks every request; with ``allow.everyone.if.no.acl.found=false``
a user may do only what an ACL allows it.
"""

from __future__ import annotations

import base64
import secrets
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from civsync.services.maven import Artifact, resolve
from civsync.services.process import LauncherError, ManagedProcess, require_free_port, run_checked
from civsync.services.tls import self_signed, write_private
from connectors.settings import KafkaSettings

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
ADMIN_USER = "admin"
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SECURE_PORT_OFFSET = 2  # the SASL_SSL listener's port, from the PLAINTEXT one's (+ 1: controller)

_ARTIFACTS = [
    Artifact("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
    # Kafka's jars log through slf4j 1.x; this binds it to the log4j2 core they ship with.
    Artifact("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
]

_LOG4J2 = """status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {logs}/server.log
appender.file.filePattern = {logs}/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
"""


@dataclass(frozen=True)
class KafkaService:
    """Owns ``<run>/kafka``: jars, config, data and logs of one broker+controller."""

    root: Path
    host: str
    port: int
    heap: str = "768m"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def secure_port(self) -> int:
        """The SASL_SSL listener's port."""
        return self.port + SECURE_PORT_OFFSET

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def secure_bootstrap(self) -> str:
        return f"{self.host}:{self.secure_port}"

    @property
    def data_dir(self) -> Path:
        """The broker's ``log.dirs``: its KRaft metadata and every topic's log."""
        return self.root / "data"

    @property
    def ca_file(self) -> Path:
        """The broker's self-signed certificate, for clients' ``ssl.ca.location``."""
        return self.root / "ca.crt"

    def admin_settings(self, base: KafkaSettings) -> KafkaSettings:
        """``base`` turned to this broker's SASL_SSL listener, logged in as ``admin`` and
        verifying the broker with its CA: how the demo reaches the secured broker (each
        engine part then logs in as its own user)."""
        return base.model_copy(
            update={
                "bootstrap_servers": self.secure_bootstrap,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_username": ADMIN_USER,
                "sasl_password": SecretStr(self.admin_password()),
                "ssl_ca_location": self.ca_file,
            }
        )

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate (PEM, mode 0600), its ``ssl.keystore.location``."""
        return self.root / "tls" / "server.pem"

    @property
    def admin_password_file(self) -> Path:
        return self.root / "admin.password"

    def admin_password(self) -> str:
        """The ``admin`` user's SCRAM password, made when the storage was first formatted."""
        if not self.admin_password_file.is_file():
            raise LauncherError(
                f"no Kafka admin password in {self.admin_password_file}: start the broker "
                "with `civsync services up` first"
            )
        return self.admin_password_file.read_text().strip()

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            "kafka", self.root / "kafka.pid", self.root / "logs" / "stdout.log", str(self.root)
        )

    def start(self) -> None:
        require_free_port("Kafka", self.host, self.port)
        require_free_port("Kafka's controller", self.host, self.controller_port)
        require_free_port("Kafka's SASL_SSL listener", self.host, self.secure_port)
        dist = resolve(f"kafka-{KAFKA_VERSION}", _ARTIFACTS, self.root / f"dist-{KAFKA_VERSION}")
        self._ensure_tls()
        config = self._write_config()
        if not (self.data_dir / "meta.properties").is_file():
            password = self._new_admin_password()
            run_checked(
                [
                    *self._java(dist),
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={_cluster_id()}",  # one word: an id may start with '-'
                    "--config",
                    str(config),
                    "--add-scram",
                    f"{SCRAM_MECHANISM}=[name={ADMIN_USER},password={password}]",
                ],
                what="formatting Kafka's KRaft storage",
            )
        self.process.start([*self._java(dist), "kafka.Kafka", str(config)])

    def ensure_admin(self) -> bool:
        """Give ``admin`` its SCRAM credential over the PLAINTEXT listener (as ANONYMOUS, a
        super user) on a broker whose storage was formatted before it had one; True if it
        was missing. A running, healthy broker only."""
        if self.admin_password_file.is_file():
            return False
        password = secrets.token_hex(24)
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upsert = UserScramCredentialUpsertion(ADMIN_USER, info, password.encode())
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)
        self._keep_admin_password(password)
        return True

    def _new_admin_password(self) -> str:
        """A new random password for ``admin``, kept in the run dir; hex, so that it needs no
        quoting in ``--add-scram``."""
        password = secrets.token_hex(24)
        self._keep_admin_password(password)
        return password

    def _keep_admin_password(self, password: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_private(self.admin_password_file, password.encode() + b"\n")

    def _ensure_tls(self) -> None:
        """The broker's key and self-signed certificate, made once; ``ca.crt`` its copy."""
        if not self.keystore.is_file():
            self.keystore.parent.mkdir(parents=True, exist_ok=True)
            self.keystore.parent.chmod(0o700)
            key_pem, cert_pem = self_signed(self.host, "civsync local Kafka broker")
            write_private(self.keystore, key_pem + cert_pem)
            (self.keystore.parent / "server.crt").write_bytes(cert_pem)
        shutil.copyfile(self.keystore.parent / "server.crt", self.ca_file)

    def healthy(self) -> bool:
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            admin.list_topics(timeout=2)
        except Exception:
            return False
        return True

    def _java(self, dist: Path) -> list[str]:
        return [
            "java",
            "-Xms256m",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={self.root / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.root / 'logs'}",
            "-cp",
            f"{dist / 'lib'}/*",
        ]

    def _write_config(self) -> Path:
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "log4j2.properties").write_text(_LOG4J2.format(logs=self.root / "logs"))
        config = self.root / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    f"listeners=PLAINTEXT://{self.host}:{self.port},"
                    f"CONTROLLER://{self.host}:{self.controller_port},"
                    f"SASL_SSL://{self.host}:{self.secure_port}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port},"
                    f"SASL_SSL://{self.host}:{self.secure_port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map="
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
                    "inter.broker.listener.name=PLAINTEXT",
                    # SCRAM-SHA-512 over TLS for every civsync user (docs/security.md)
                    f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                    f"listener.name.sasl_ssl.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
                    f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}.sasl.jaas.config="
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                    "listener.name.sasl_ssl.ssl.keystore.type=PEM",
                    f"listener.name.sasl_ssl.ssl.keystore.location={self.keystore}",
                    # every request authorised; PLAINTEXT and the controller are ANONYMOUS
                    f"authorizer.class.name={STANDARD_AUTHORIZER}",
                    "allow.everyone.if.no.acl.found=false",
                    f"super.users=User:{ADMIN_USER};User:ANONYMOUS",
                    f"log.dirs={self.data_dir}",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        return config


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
