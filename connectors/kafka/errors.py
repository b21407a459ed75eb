"""Translation of librdkafka errors into civsync's retriable/fatal classes."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from engine.errors import CivsyncError, FatalError, RetriableError


class KafkaOperationError(CivsyncError):
    """Marker base; the concrete class says whether a retry can help."""


class KafkaRetriableError(KafkaOperationError, RetriableError):
    """Kafka refused for a passing reason (leader moving, broker restarting, timeout), or a
    transaction must be aborted and replayed."""


class KafkaFatalError(KafkaOperationError, FatalError):
    """Kafka refused for a reason retrying cannot fix (authorisation, bad config, fenced)."""


def translate(error: KafkaError | KafkaException, doing: str) -> KafkaOperationError:
    """The civsync error for a librdkafka error met while ``doing`` something."""
    kafka_error = error.args[0] if isinstance(error, KafkaException) else error
    if not isinstance(kafka_error, KafkaError):
        return KafkaFatalError(f"{doing}: {error}")
    message = f"{doing}: {kafka_error.name()} ({kafka_error.str()})"
    passing = kafka_error.retriable() or kafka_error.txn_requires_abort()
    if passing and not kafka_error.fatal():
        return KafkaRetriableError(message)
    return KafkaFatalError(message)
