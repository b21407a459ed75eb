"""The Confluent-compatible schema registry: client, compatibility rules, schemas by id.

Subjects follow TopicNameStrategy (``<topic>-key``, ``<topic>-value``). Works with
Confluent Schema Registry and with Apicurio's ``/apis/ccompat/v7`` API.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterable
from typing import TypeVar

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from connectors.settings import RegistrySettings
from engine.errors import CivsyncError, FatalError, RetriableError

BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
_SERVER_ERROR = 500
_CONFLICT = 409
_ATTEMPTS = 3  # of a request that lost a creation race
T = TypeVar("T")


class RegistryError(CivsyncError):
    """Marker base for registry failures."""


class RegistryUnavailableError(RegistryError, RetriableError):
    """The registry could not be reached or answered with a server error."""


class RegistryRejectedError(RegistryError, FatalError):
    """The registry refused the request (incompatible schema, unknown subject or id)."""


def translate(exc: Exception, doing: str) -> RegistryError:
    """The civsync error for a registry client failure met while ``doing`` something; a
    certificate that does not verify is refused (fatal), not waited for."""
    if isinstance(exc, SchemaRegistryError) and 0 < exc.http_status_code < _SERVER_ERROR:
        return RegistryRejectedError(f"{doing}: {exc.error_message} (code {exc.error_code})")
    if _caused_by(exc, ssl.SSLCertVerificationError):
        return RegistryRejectedError(
            f"{doing}: the registry's TLS certificate does not verify ({exc}); set [registry]"
            " ssl_ca_location to the CA file it is signed with (the local registry's:"
            " .run/registry/ca.crt)"
        )
    return RegistryUnavailableError(f"{doing}: {exc}")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is ``exc`` or in its chain of causes (httpx wraps ssl's errors)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class SchemaRegistry:
    """civsync's view of the registry; ``client`` feeds confluent-kafka's Avro serializers."""

    def __init__(self, settings: RegistrySettings) -> None:
        try:
            self.client = SchemaRegistryClient(settings.client_config())
        except FileNotFoundError as exc:
            raise RegistryRejectedError(
                f"the registry's CA file {settings.ssl_ca_location} does not exist: start the"
                " local services (`civsync services up`) or set [registry] ssl_ca_location"
            ) from exc

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()

    def __enter__(self) -> SchemaRegistry:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def set_compatibility(self, subject: str, level: str = BACKWARD_TRANSITIVE) -> None:
        self._raced(
            lambda: self.client.set_compatibility(subject_name=subject, level=level),
            f"setting {level} on {subject}",
        )

    def register(self, subject: str, schema_str: str) -> int:
        """Register an Avro schema under ``subject`` (idempotent); its id."""
        schema = Schema(schema_str, "AVRO")
        return int(
            self._raced(
                lambda: self.client.register_schema(subject, schema),
                f"registering a schema under {subject}",
            )
        )

    @staticmethod
    def _raced(operation: Callable[[], T], doing: str) -> T:
        """``operation``, again if it lost a race. Two processes creating the same subject or
        compatibility rule at once can make the loser's request fail with 409 (Apicurio: the
        artifact or rule already exists); the retry then finds what the winner created."""
        for attempt in range(_ATTEMPTS):
            try:
                return operation()
            except SchemaRegistryError as exc:
                raced = exc.http_status_code == _CONFLICT and "already exists" in exc.error_message
                if not raced or attempt == _ATTEMPTS - 1:
                    raise translate(exc, doing) from exc
            except Exception as exc:
                raise translate(exc, doing) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def compatibility(self, subject: str) -> str:
        try:
            return str(self.client.get_compatibility(subject_name=subject))
        except Exception as exc:
            raise translate(exc, f"reading the compatibility of {subject}") from exc

    def subjects(self) -> list[str]:
        try:
            return [str(subject) for subject in self.client.get_subjects()]
        except Exception as exc:
            raise translate(exc, "listing the subjects") from exc

    def delete_subjects(self, subjects: Iterable[str]) -> None:
        """Delete each of ``subjects`` for good (soft, then hard, as the API requires);
        one that does not exist is skipped. For tests and benchmarks cleaning up."""
        for subject in subjects:
            for permanent in (False, True):
                with contextlib.suppress(SchemaRegistryError):  # 404: none, or gone already
                    self.client.delete_subject(subject, permanent=permanent)

    def writer_schema(self, schema_id: int) -> str:
        """The schema text registered under ``schema_id``."""
        try:
            return str(self.client.get_schema(schema_id).schema_str)
        except Exception as exc:
            raise translate(exc, f"fetching schema id {schema_id}") from exc
