"""The Confluent-compatible schema registry: client, compatibility rules, schemas by id.

Subjects follow TopicNameStrategy (``<topic>-key``, ``<topic>-value``). Works with
Confluent Schema Registry and with Apicurio's ``/apis/ccompat/v7`` API.
"""

from __future__ import annotations

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.settings import RegistrySettings
from engine.errors import CivsyncError, FatalError, RetriableError

BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
_SERVER_ERROR = 500
_CONFLICT = 409
_REGISTER_ATTEMPTS = 3


class RegistryError(CivsyncError):
    """Marker base for registry failures."""


class RegistryUnavailableError(RegistryError, RetriableError):
    """The registry could not be reached or answered with a server error."""


class RegistryRejectedError(RegistryError, FatalError):
    """The registry refused the request (incompatible schema, unknown subject or id)."""


def translate(exc: Exception, doing: str) -> RegistryError:
    """The civsync error for a registry client failure met while ``doing`` something."""
    if isinstance(exc, SchemaRegistryError) and 0 < exc.http_status_code < _SERVER_ERROR:
        return RegistryRejectedError(f"{doing}: {exc.error_message} (code {exc.error_code})")
    return RegistryUnavailableError(f"{doing}: {exc}")


class SchemaRegistry:
    """civsync's view of the registry; ``client`` feeds confluent-kafka's Avro serializers."""

    def __init__(self, settings: RegistrySettings) -> None:
        self.client = SchemaRegistryClient(settings.client_config())

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def set_compatibility(self, subject: str, level: str = BACKWARD_TRANSITIVE) -> None:
        try:
            self.client.set_compatibility(subject_name=subject, level=level)
        except Exception as exc:
            raise translate(exc, f"setting {level} on {subject}") from exc

    def register(self, subject: str, schema_str: str) -> int:
        """Register an Avro schema under ``subject`` (idempotent); its id.

        Two processes registering a new subject at once can make the loser's request fail
        with 409 (Apicurio: the artifact already exists); the retry then finds the schema.
        """
        for attempt in range(_REGISTER_ATTEMPTS):
            try:
                return int(self.client.register_schema(subject, Schema(schema_str, "AVRO")))
            except SchemaRegistryError as exc:
                raced = exc.http_status_code == _CONFLICT and "already exists" in exc.error_message
                if not raced or attempt == _REGISTER_ATTEMPTS - 1:
                    raise translate(exc, f"registering a schema under {subject}") from exc
            except Exception as exc:
                raise translate(exc, f"registering a schema under {subject}") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def compatibility(self, subject: str) -> str:
        try:
            return str(self.client.get_compatibility(subject_name=subject))
        except Exception as exc:
            raise translate(exc, f"reading the compatibility of {subject}") from exc

    def writer_schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        try:
            return str(self.client.get_schema(schema_id).schema_str)
        except Exception as exc:
            raise translate(exc, f"fetching schema id {schema_id}") from exc
