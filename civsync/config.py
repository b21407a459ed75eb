"""The application's settings: a TOML file, overridden by ``CIVSYNC_*`` environment variables.

Precedence, highest first: explicit arguments, environment, the config file, defaults.
Nested fields use ``__``: ``CIVSYNC_KAFKA__BOOTSTRAP_SERVERS``, ``CIVSYNC_CIVIL__PORT``.
The file is ``$CIVSYNC_CONFIG`` or the path given to ``load_settings``; nothing is read at
import time. A bad value raises ``ConfigError`` naming the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from connectors.merge.settings import MergeSettings
from connectors.settings import (
    CaptureSettings,
    CivilStoreSettings,
    KafkaSettings,
    KafkaUsersSettings,
    PopulationStoreSettings,
    RegistrySettings,
    RolesSettings,
    StoreSettings,
)
from engine.errors import ConfigError

CONFIG_ENV = "CIVSYNC_CONFIG"


class CivsyncSettings(BaseSettings):
    """Everything civsync needs to reach its services."""

    model_config = SettingsConfigDict(
        env_prefix="CIVSYNC_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    civil: CivilStoreSettings = CivilStoreSettings()
    population: PopulationStoreSettings = PopulationStoreSettings()
    merge: MergeSettings = MergeSettings()
    capture: CaptureSettings = CaptureSettings()
    roles: RolesSettings = RolesSettings()
    kafka_users: KafkaUsersSettings = KafkaUsersSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def routed_capture(self) -> CaptureSettings:
        """``[capture]`` as capture applies it: with ``route_people``, each table the merger
        maps is routed by its (first) person column, unless ``partition_by`` names it."""
        if not self.capture.route_people:
            return self.capture
        people: dict[str, str] = {}
        for mapping in self.merge.mappings():
            people.setdefault(f"{mapping.store}.{mapping.table}", mapping.person_column)
        routes = people | self.capture.partition_by
        return self.capture.model_copy(update={"partition_by": routes})

    def stores(self) -> dict[str, StoreSettings]:
        """The two stores by name, in a stable order, reached as ``[civil]`` and
        ``[population]`` say: the owner, for the admin commands (``migrate``, ``roles``,
        ``services``); an engine part started by ``civsync run`` uses ``part_store``."""
        return {"civil": self.civil, "population": self.population}

    def part_store(self, part: str, store: str) -> StoreSettings:
        """``store`` as ``part`` (``capture``, ``sink_<store>``, ``reconcile``) reaches it:
        the store's endpoint and TLS settings, with the part's own user and password."""
        return self.stores()[store].as_role(self.roles.of(part))

    def kafka_part(self, part: str) -> KafkaSettings:
        """``[kafka]`` as ``part`` (a key of ``KAFKA_PARTS``) reaches it: the same cluster,
        protocol, mechanism and CA, with the part's own SCRAM user."""
        return self.kafka.as_user(self.kafka_users.of(part))

    def kafka_login(self, part: str) -> KafkaSettings:
        """``[kafka]`` for a command that works as ``part``: as configured, unless the config
        names nobody (``sasl_username = ""``) and logs in with SASL: then as ``part``'s own
        user, so that a steward's command logs in as the steward."""
        if self.kafka.logs_in and not self.kafka.sasl_username:
            return self.kafka_part(part)
        return self.kafka

    def as_part(self, part: str) -> CivsyncSettings:
        """These settings with both stores reached as ``part`` (reconcile reads both)."""
        return self.model_copy(update={name: self.part_store(part, name) for name in self.stores()})


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """``kafka`` as the ``CIVSYNC_KAFKA__*`` variables that give a process started with them
    the same cluster, protocol, login and CA (the password in clear: for a child's
    environment or ``civsync services env``, never a log)."""
    password = None if kafka.sasl_password is None else kafka.sasl_password.get_secret_value()
    values = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
        "sasl_mechanism": kafka.sasl_mechanism,
        "sasl_username": kafka.sasl_username or "",  # empty: nobody
        "sasl_password": password,
        "ssl_ca_location": kafka.ssl_ca_location,
    }
    return {f"CIVSYNC_KAFKA__{k.upper()}": str(v) for k, v in values.items() if v is not None}


def load_settings(config_file: Path | None = None, **overrides: Any) -> CivsyncSettings:
    """Build the settings from ``config_file`` (or ``$CIVSYNC_CONFIG``) and the environment."""
    path = config_file or _path_from_env()
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")

    class _FromFile(CivsyncSettings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc


def _path_from_env() -> Path | None:
    value = os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def _describe(exc: ValidationError, path: Path | None) -> str:
    origin = f" (file {path} or CIVSYNC_* environment)" if path else " (CIVSYNC_* environment)"
    problems = "; ".join(
        f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}" for err in exc.errors()
    )
    return f"invalid civsync settings{origin}: {problems}"
