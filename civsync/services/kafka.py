"""A single-node Apache Kafka broker in KRaft mode, from Maven Central jars, on loopback.

Clients reach it over one listener, ``SASL_SSL`` on ``port + 2`` (``port + 1`` is the
controller's): TLS with a certificate made once in ``<root>/tls`` (clients verify it with
``<root>/ca.crt``, their ``ssl.ca.location``) and SCRAM-SHA-512 logins. ``admin`` is a super
user, created when the storage is formatted, with ``[kafka]``'s password when ``[kafka]``
logs in as admin (by default: a development password); every other user and its ACLs come
from ``civsync kafka-users`` (``connectors.kafka.security``). The broker talks to itself
over the same listener, as ``admin``.

``PLAINTEXT`` on ``port`` (no TLS, no login; its clients are ``User:ANONYMOUS``, a super
user) opens only when ``[kafka]`` says ``security_protocol = "PLAINTEXT"``: explicit local
development, never beyond loopback (docs/security.md, Kafka).

The StandardAuthorizer checks every request; with ``allow.everyone.if.no.acl.found=false``
a user may do only what an ACL allows it.
"""

from __future__ import annotations

import base64
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import KafkaError
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
from connectors.kafka.errors import RefusalWatch
from connectors.settings import DEVELOPMENT_ADMIN_PASSWORD, LOCAL_KAFKA_ADMIN, KafkaSettings

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"
ADMIN_USER = LOCAL_KAFKA_ADMIN
SCRAM_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192  # Kafka's minimum for SCRAM-SHA-512 is 4096
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_UNPARSED = ' ,[]"'  # what `kafka-storage format --add-scram 'M=[name=..,password=..]'` splits on
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
    admin_password: SecretStr = field(default=DEVELOPMENT_ADMIN_PASSWORD, repr=False)
    plaintext: bool = False  # also listen in clear on ``port`` (explicit local development)
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
        """Where clients reach it: the PLAINTEXT listener if it has one, else SASL_SSL."""
        return f"{self.host}:{self.port if self.plaintext else self.secure_port}"

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

    def admin_settings(self, base: KafkaSettings | None = None) -> KafkaSettings:
        """``base`` (by default, the defaults) turned to this broker's SASL_SSL listener,
        logged in as ``admin`` and verifying the broker with its CA."""
        return (base or KafkaSettings()).model_copy(
            update={
                "bootstrap_servers": self.secure_bootstrap,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": SCRAM_MECHANISM,
                "sasl_username": ADMIN_USER,
                "sasl_password": self._login_password(),
                "ssl_ca_location": self.ca_file,
            }
        )

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate (PEM, mode 0600), its ``ssl.keystore.location``."""
        return self.root / "tls" / "server.pem"

    @property
    def earlier_password_file(self) -> Path:
        """Where a broker formatted before ``[kafka]`` named admin's password kept the random
        one it was given (``adopt_admin_password``)."""
        return self.root / "admin.password"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            "kafka", self.root / "kafka.pid", self.root / "logs" / "stdout.log", str(self.root)
        )

    def start(self) -> None:
        if set(self.admin_password.get_secret_value()) & set(_UNPARSED):
            raise LauncherError(
                f"Kafka's storage tool cannot take an admin password with any of {_UNPARSED!r}"
                " in it: set another [kafka] sasl_password"
            )
        if self.plaintext:
            require_free_port("Kafka", self.host, self.port)
        require_free_port("Kafka's controller", self.host, self.controller_port)
        require_free_port("Kafka's SASL_SSL listener", self.host, self.secure_port)
        dist = self.distribution()
        self._ensure_tls()
        formatted = (self.data_dir / "meta.properties").is_file()
        if not formatted:
            self.earlier_password_file.unlink(missing_ok=True)  # a new storage: admin's own
        config = self._write_config()
        if not formatted:
            run_checked(
                [
                    *self._java(dist),
                    "kafka.tools.StorageTool",
                    "format",
                    f"--cluster-id={_cluster_id()}",  # one word: an id may start with '-'
                    "--config",
                    str(config),
                    "--add-scram",
                    f"{SCRAM_MECHANISM}=[name={ADMIN_USER},"
                    f"password={self.admin_password.get_secret_value()}]",
                ],
                what="formatting Kafka's KRaft storage",
            )
        self.process.start([*self._java(dist), "kafka.Kafka", str(config)])

    def distribution(self) -> Path:
        """Kafka's jars from Maven Central (``lib/``), resolved once, then cached."""
        return resolve(f"kafka-{KAFKA_VERSION}", _ARTIFACTS, self.root / f"dist-{KAFKA_VERSION}")

    def adopt_admin_password(self) -> bool:
        """On a healthy broker formatted with a random admin password (kept in
        ``earlier_password_file``), set admin's password to ``admin_password`` and forget
        the file; True if it did. The broker's own connections log in with the new one from
        its next start."""
        if not self.earlier_password_file.is_file():
            return False
        admin = AdminClient(self.admin_settings().client_config())
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        password = self.admin_password.get_secret_value().encode()
        upsert = UserScramCredentialUpsertion(ADMIN_USER, info, password)
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)
        self.earlier_password_file.unlink()
        return True

    def _login_password(self) -> SecretStr:
        """admin's password as the broker knows it now."""
        if self.earlier_password_file.is_file():
            return SecretStr(self.earlier_password_file.read_text().strip())
        return self.admin_password

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
        """Whether the broker answers admin over SASL_SSL (or anyone over PLAINTEXT, when it
        listens in clear); a refused login or certificate raises, saying what to fix."""
        watch = RefusalWatch()
        login = (
            KafkaSettings(bootstrap_servers=self.bootstrap, security_protocol="PLAINTEXT")
            if self.plaintext
            else self.admin_settings()
        )
        config = login.client_config()
        admin = AdminClient(config | {"error_cb": watch, "log_level": 0})
        try:
            admin.list_topics(timeout=2)
        except Exception:
            admin.poll(0)
            if watch.refusal is not None:
                hint = (
                    ""
                    if watch.refusal.code() == KafkaError._SSL
                    else f"; if the storage in {self.data_dir} was formatted with another admin"
                    " password, set [kafka] sasl_password (CIVSYNC_KAFKA__SASL_PASSWORD) to it,"
                    " or stop the services and delete that directory to format it again"
                )
                raise LauncherError(f"{watch.refused('probing Kafka as admin')}{hint}") from None
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
        """``server.properties`` (mode 0600: it holds admin's password, for the broker's
        own connections)."""
        (self.root / "logs").mkdir(parents=True, exist_ok=True)
        (self.root / "log4j2.properties").write_text(_LOG4J2.format(logs=self.root / "logs"))
        clients = [f"SASL_SSL://{self.host}:{self.secure_port}"]
        if self.plaintext:
            clients.insert(0, f"PLAINTEXT://{self.host}:{self.port}")
        scram = f"listener.name.sasl_ssl.{SCRAM_MECHANISM.lower()}"
        login = self.admin_settings().java_properties()["sasl.jaas.config"]
        config = self.root / "server.properties"
        lines = [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
            f"listeners={','.join(clients)},CONTROLLER://{self.host}:{self.controller_port}",
            f"advertised.listeners={','.join(clients)}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map="
            "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL",
            # SCRAM-SHA-512 over TLS for every client, and for the broker's own connections
            "inter.broker.listener.name=SASL_SSL",
            f"sasl.mechanism.inter.broker.protocol={SCRAM_MECHANISM}",
            f"sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            f"listener.name.sasl_ssl.sasl.enabled.mechanisms={SCRAM_MECHANISM}",
            properties_line(f"{scram}.sasl.jaas.config", login),
            "listener.name.sasl_ssl.ssl.keystore.type=PEM",
            f"listener.name.sasl_ssl.ssl.keystore.location={self.keystore}",
            "listener.name.sasl_ssl.ssl.truststore.type=PEM",
            f"listener.name.sasl_ssl.ssl.truststore.location={self.ca_file}",
            # every request authorised; the controller's listener (and PLAINTEXT) are ANONYMOUS
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
        write_private(config, "\n".join(lines).encode())
        return config


def properties_line(key: str, value: str) -> str:
    """``key=value`` as a Java properties file reads it back (a backslash there escapes)."""
    escaped = value.replace("\\", "\\\\")
    return f"{key}={escaped}"


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
