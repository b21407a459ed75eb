"""Connection settings of each external service, one frozen model per component.

These models carry values only; they never read the environment. ``civsync.config``
composes them into the application's settings (file plus ``CIVSYNC_*`` environment).
Defaults point at the local launcher's loopback ports (see ``civsync.services``).
"""

from __future__ import annotations

from typing import Any, Literal

from psycopg.conninfo import make_conninfo
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Frozen):
    """Where the Kafka cluster is and how civsync's clients talk to it."""

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    client_id: str = "civsync"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4",
        description="producers' compression.type: lz4 keeps compacted topics small; none "
        "saves CPU on client and broker where disk and network are cheap (Kafka's default)",
    )

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration shared by producers, consumers and the admin client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username or ""
            config["sasl.password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else ""
            )
        return config


class RegistrySettings(_Frozen):
    """A Confluent-compatible schema registry (Apicurio's ``/apis/ccompat/v7`` works)."""

    url: HttpUrl = HttpUrl("http://127.0.0.1:8081/apis/ccompat/v7")
    basic_auth_user_info: SecretStr | None = None

    def client_config(self) -> dict[str, Any]:
        """Configuration for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        config: dict[str, Any] = {"url": str(self.url).rstrip("/")}
        if self.basic_auth_user_info is not None:
            config["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        return config


class StoreSettings(_Frozen):
    """One PostgreSQL store (civil-status or population)."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = Field(default="postgres", min_length=1)
    user: str = "civsync"
    password: SecretStr = SecretStr("civsync")
    sslmode: str = "prefer"
    connect_timeout_s: int = Field(default=10, ge=1)

    def conninfo(self) -> str:
        """A libpq connection string; keep it out of logs, it holds the password."""
        return make_conninfo(
            host=self.host,
            port=self.port,
            dbname=self.dbname,
            user=self.user,
            password=self.password.get_secret_value(),
            sslmode=self.sslmode,
            connect_timeout=self.connect_timeout_s,
            application_name="civsync",
        )


class CivilStoreSettings(StoreSettings):
    """The electronic civil-status store (Ministry of Justice)."""

    port: int = Field(default=5433, ge=1, le=65535)
    dbname: str = Field(default="civil", min_length=1)


class PopulationStoreSettings(StoreSettings):
    """The National Population Database (Ministry of Public Security)."""

    port: int = Field(default=5434, ge=1, le=65535)
    dbname: str = Field(default="population", min_length=1)


class CaptureSettings(_Frozen):
    """How capture publishes: ``partition_by`` routes a table's events by one of its columns
    (``"<store>.<schema>.<table>" = "<column>"``, e.g. acts by the person's PIN) instead of by
    the row's key, as Debezium's PartitionRouting does, so that all of a person's events share
    a partition: the person's partition in the merger's topics (``engine.mapping``). With
    ``route_people`` (the default), every table the merger maps is routed by its person
    column unless ``partition_by`` names it: the merger then merges a change where it reads
    it, one hop. The price: a row whose person column changes has its events before and after
    the change in two partitions (docs/capture.md, Partition routing)."""

    partition_by: dict[str, str] = Field(
        default_factory=dict,
        description="table (store.schema.table) -> column whose value picks the partition",
    )
    route_people: bool = Field(
        default=True, description="route each table the merger maps by its person column"
    )
    slot_prefix: str = Field(
        default="civsync",
        pattern=r"^[a-z0-9_]{1,50}$",
        description="replication slots are named <slot_prefix>_<store> (they are per server)",
    )

    def route(self, store: str, schema: str, table: str) -> str | None:
        """The column that partitions ``store``'s ``schema.table``, if any."""
        return self.partition_by.get(f"{store}.{schema}.{table}")
