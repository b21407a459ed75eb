"""Connection settings of each external service, one frozen model per component.

These models carry values only; they never read the environment. ``civsync.config``
composes them into the application's settings (file plus ``CIVSYNC_*`` environment).
Defaults point at the local launcher's loopback ports (see ``civsync.services``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from psycopg.conninfo import make_conninfo
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    SecretStr,
    field_validator,
    model_validator,
)

from engine.errors import ConfigError


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"


def _jaas_quoted(value: str) -> str:
    """``value`` as a JAAS option value: in double quotes, ``\\`` and ``"`` escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


LOCAL_KAFKA_ADMIN = "admin"  # the local broker's super user (civsync.services.kafka)
DEVELOPMENT_ADMIN_PASSWORD = SecretStr("civsync-admin")  # the local broker's, by default


class KafkaSettings(_Frozen):
    """Where the Kafka cluster is and how civsync's clients talk to it. The defaults reach
    the local broker (``civsync services up``) over its SASL_SSL listener as its ``admin``,
    with a development password: set a real one anywhere else."""

    bootstrap_servers: str = Field(default="127.0.0.1:9094", min_length=1)
    client_id: str = "civsync"
    security_protocol: Literal["SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"] = Field(
        default="SASL_SSL",
        description="SASL_SSL: TLS and a SCRAM login, the local broker's client listener; "
        "PLAINTEXT for explicit local development only (the local broker then also listens "
        "in clear, at bootstrap_servers' port, where anyone is a super user)",
    )
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = Field(
        default=LOCAL_KAFKA_ADMIN,
        description="whom civsync logs in as; empty: nobody here (an engine's config: "
        "`civsync run` gives each part its own user)",
    )
    sasl_password: SecretStr | None = DEVELOPMENT_ADMIN_PASSWORD
    ssl_ca_location: Path | None = Field(
        default=Path(".run/kafka/ca.crt"),
        description="the CA certificate the broker's TLS certificate is checked against "
        "(librdkafka's ssl.ca.location; the local broker's is <run>/kafka/ca.crt); unset: "
        "the system's CA store",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        default="lz4",
        description="producers' compression.type: lz4 keeps compacted topics small; none "
        "saves CPU on client and broker where disk and network are cheap (Kafka's default)",
    )

    @field_validator("sasl_username", mode="before")
    @classmethod
    def _empty_is_nobody(cls, value: object) -> object:
        return None if value == "" else value

    @property
    def logs_in(self) -> bool:
        """Whether clients log in (SASL_SSL or SASL_PLAINTEXT)."""
        return self.security_protocol.startswith("SASL")

    @property
    def uses_tls(self) -> bool:
        """Whether clients connect over TLS (SASL_SSL or SSL)."""
        return self.security_protocol.endswith("SSL")

    def client_config(self) -> dict[str, Any]:
        """librdkafka configuration shared by producers, consumers and the admin client."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
        }
        if self.logs_in:
            if not (self.sasl_username and self.sasl_password):
                raise ConfigError(
                    f"[kafka] logs in with {self.sasl_mechanism} but names no sasl_username and"
                    " sasl_password: set them (CIVSYNC_KAFKA__SASL_USERNAME, __SASL_PASSWORD)"
                    " for this command; an engine's parts get theirs from `civsync run`"
                )
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.get_secret_value()
        if self.uses_tls and self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config

    def java_properties(self) -> dict[str, str]:
        """The same connection and login for Kafka's Java clients (Kafka Connect, the
        broker's perf and topic tools): SCRAM through JAAS, the CA as a PEM truststore."""
        config = self.client_config()  # says what is missing
        properties = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.logs_in:
            user = _jaas_quoted(config["sasl.username"])
            password = _jaas_quoted(config["sasl.password"])
            properties["sasl.mechanism"] = self.sasl_mechanism
            properties["sasl.jaas.config"] = (
                f"{_SCRAM_LOGIN} required username={user} password={password};"
            )
        if "ssl.ca.location" in config:
            properties["ssl.truststore.type"] = "PEM"
            properties["ssl.truststore.location"] = config["ssl.ca.location"]
        return properties

    def as_user(self, user: KafkaUserSettings) -> Self:
        """This cluster reached with ``user``'s SCRAM login (``security_protocol`` and
        ``sasl_mechanism`` as set here)."""
        return self.model_copy(update={"sasl_username": user.user, "sasl_password": user.password})


class RegistrySettings(_Frozen):
    """A Confluent-compatible schema registry (Apicurio's ``/apis/ccompat/v7`` works), over
    HTTPS by default: the local launcher's serves TLS only, with the certificate in
    ``ssl_ca_location``; an ``http://`` URL is plain HTTP (compose's registry)."""

    url: HttpUrl = HttpUrl("https://127.0.0.1:8081/apis/ccompat/v7")
    basic_auth_user_info: SecretStr | None = None
    ssl_ca_location: Path | None = Field(
        default=Path(".run/registry/ca.crt"),
        description="CA file that verifies an https registry (the local launcher writes it); "
        "unset: the system's CAs",
    )

    @property
    def uses_tls(self) -> bool:
        return self.url.scheme == "https"

    def client_config(self) -> dict[str, Any]:
        """Configuration for ``confluent_kafka.schema_registry.SchemaRegistryClient``."""
        config: dict[str, Any] = {"url": str(self.url).rstrip("/")}
        if self.basic_auth_user_info is not None:
            config["basic.auth.user.info"] = self.basic_auth_user_info.get_secret_value()
        if self.uses_tls and self.ssl_ca_location is not None:
            config["ssl.ca.location"] = str(self.ssl_ca_location)
        return config


class StoreSettings(_Frozen):
    """One PostgreSQL store (civil-status or population). ``user`` is whom a command connects
    as: the store's owner for ``civsync migrate`` and the other admin commands; the parts
    ``civsync run`` starts connect with their own roles (``RolesSettings``,
    ``CivsyncSettings.part_store``)."""

    host: str = "127.0.0.1"
    port: int = Field(default=5432, ge=1, le=65535)
    dbname: str = Field(default="postgres", min_length=1)
    user: str = "civsync"
    password: SecretStr = SecretStr("civsync")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="prefer",
        description="libpq's sslmode: prefer uses TLS when the server offers it (the local "
        "stores do); verify-full with sslrootcert also checks the server's certificate",
    )
    sslrootcert: Path | None = Field(
        default=None, description="the CA certificate verify-ca and verify-full check against"
    )
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
            sslrootcert=None if self.sslrootcert is None else str(self.sslrootcert),
            connect_timeout=self.connect_timeout_s,
            application_name="civsync",
        )

    def as_role(self, role: RoleSettings) -> Self:
        """This store reached with ``role``'s user and password."""
        return self.model_copy(update={"user": role.user, "password": role.password})


class RoleSettings(_Frozen):
    """One engine part's own login role in the stores (SCRAM-SHA-256 password)."""

    user: str = Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    password: SecretStr = Field(min_length=1)


# The engine's parts that connect to a store, and the stores each connects to.
PART_STORES: dict[str, tuple[str, ...]] = {
    "capture": ("civil", "population"),
    "sink_civil": ("civil",),
    "sink_population": ("population",),
    "reconcile": ("civil", "population"),
}


def _development(part: str) -> dict[str, Any]:
    """A part's local development login: ``civsync_<part>``, password ``civsync-<part>``."""
    return {"user": f"civsync_{part}", "password": f"civsync-{part}"}


class _PartLogins(_Frozen):
    """One login per part (a field each): a part given only its password (or its user) keeps
    the other's development default, and no two parts share a user."""

    PARTS: ClassVar[tuple[str, ...]] = ()
    RESERVED: ClassVar[frozenset[str]] = frozenset()  # users no part may have
    LOGIN: ClassVar[str] = "user"  # what a login is called in errors

    @staticmethod
    def development(part: str) -> dict[str, Any]:
        """``part``'s development login (user and password)."""
        raise NotImplementedError

    @model_validator(mode="before")
    @classmethod
    def _development_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        return {
            part: {**cls.development(part), **value} if isinstance(value, dict) else value
            for part, value in data.items()
        }

    @model_validator(mode="after")
    def _one_user_per_part(self) -> Self:
        users = [getattr(self, part).user for part in self.PARTS]
        if len(set(users)) != len(users):
            raise ValueError(f"each part needs a {self.LOGIN} of its own, not {users}")
        if reserved := sorted(self.RESERVED.intersection(users)):
            raise ValueError(f"{', '.join(reserved)}: not a part's user (the super user's)")
        return self


class RolesSettings(_PartLogins):
    """Each engine part's login role, created by ``civsync migrate`` (docs/security.md). The
    defaults are development passwords for the local stores: set real ones elsewhere
    (``CIVSYNC_ROLES__CAPTURE__PASSWORD``)."""

    PARTS: ClassVar[tuple[str, ...]] = tuple(PART_STORES)

    @staticmethod
    def development(part: str) -> dict[str, Any]:
        return _development(part)

    capture: RoleSettings = RoleSettings(**_development("capture"))
    sink_civil: RoleSettings = RoleSettings(**_development("sink_civil"))
    sink_population: RoleSettings = RoleSettings(**_development("sink_population"))
    reconcile: RoleSettings = RoleSettings(**_development("reconcile"))

    def of(self, part: str) -> RoleSettings:
        """The role of ``part`` (a key of ``PART_STORES``)."""
        if part not in PART_STORES:
            raise ValueError(f"no part {part!r}; the parts are {sorted(PART_STORES)}")
        role: RoleSettings = getattr(self, part)
        return role

    def in_store(self, store: str) -> dict[str, RoleSettings]:
        """The parts that connect to ``store``, with their roles."""
        return {part: self.of(part) for part, stores in PART_STORES.items() if store in stores}


class KafkaUserSettings(_Frozen):
    """One engine part's own SCRAM user on the Kafka cluster."""

    user: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    password: SecretStr = Field(min_length=1)


# The engine's parts (and the stewards) that log in to Kafka, each as a user of its own.
KAFKA_PARTS = (
    "capture_civil",
    "capture_population",
    "merger",
    "sink_civil",
    "sink_population",
    "steward",
)


def _kafka_development(part: str) -> dict[str, Any]:
    """A part's local development user: ``capture-civil``, password ``civsync-capture-civil``."""
    user = part.replace("_", "-")
    return {"user": user, "password": f"civsync-{user}"}


class KafkaUsersSettings(_PartLogins):
    """Each part's SCRAM user on Kafka, created with its ACLs by ``civsync kafka-users``
    (docs/security.md). The defaults are development passwords for the local broker: set
    real ones elsewhere (``CIVSYNC_KAFKA_USERS__MERGER__PASSWORD``)."""

    PARTS: ClassVar[tuple[str, ...]] = KAFKA_PARTS
    RESERVED: ClassVar[frozenset[str]] = frozenset({LOCAL_KAFKA_ADMIN})
    LOGIN: ClassVar[str] = "Kafka user"

    @staticmethod
    def development(part: str) -> dict[str, Any]:
        return _kafka_development(part)

    capture_civil: KafkaUserSettings = KafkaUserSettings(**_kafka_development("capture_civil"))
    capture_population: KafkaUserSettings = KafkaUserSettings(
        **_kafka_development("capture_population")
    )
    merger: KafkaUserSettings = KafkaUserSettings(**_kafka_development("merger"))
    sink_civil: KafkaUserSettings = KafkaUserSettings(**_kafka_development("sink_civil"))
    sink_population: KafkaUserSettings = KafkaUserSettings(**_kafka_development("sink_population"))
    steward: KafkaUserSettings = KafkaUserSettings(**_kafka_development("steward"))

    def of(self, part: str) -> KafkaUserSettings:
        """The user of ``part`` (one of ``KAFKA_PARTS``)."""
        if part not in KAFKA_PARTS:
            raise ValueError(f"no Kafka part {part!r}; the parts are {sorted(KAFKA_PARTS)}")
        user: KafkaUserSettings = getattr(self, part)
        return user


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
    separate_publisher: bool = Field(
        default=False,
        description="build, encode and produce events in a process of their own, on another"
        " core, while capture reads and decodes (connectors/capture/handoff.py)",
    )

    def route(self, store: str, schema: str, table: str) -> str | None:
        """The column that partitions ``store``'s ``schema.table``, if any."""
        return self.partition_by.get(f"{store}.{schema}.{table}")
