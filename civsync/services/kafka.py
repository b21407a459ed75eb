"""A single-node Apache Kafka broker in KRaft mode, from Maven Central jars, on loopback."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from civsync.services.maven import Artifact, resolve
from civsync.services.process import ManagedProcess, require_free_port, run_checked

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"

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
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def process(self) -> ManagedProcess:
        return ManagedProcess(
            "kafka", self.root / "kafka.pid", self.root / "logs" / "stdout.log", str(self.root)
        )

    def start(self) -> None:
        require_free_port("Kafka", self.host, self.port)
        require_free_port("Kafka's controller", self.host, self.controller_port)
        dist = resolve(f"kafka-{KAFKA_VERSION}", _ARTIFACTS, self.root / f"dist-{KAFKA_VERSION}")
        config = self._write_config()
        if not (self.root / "data" / "meta.properties").is_file():
            run_checked(
                [
                    *self._java(dist),
                    "kafka.tools.StorageTool",
                    "format",
                    "--cluster-id",
                    _cluster_id(),
                    "--config",
                    str(config),
                ],
                what="formatting Kafka's KRaft storage",
            )
        self.process.start([*self._java(dist), "kafka.Kafka", str(config)])

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
                    f"CONTROLLER://{self.host}:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://{self.host}:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.root / 'data'}",
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
