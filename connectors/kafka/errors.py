"""Translation of librdkafka errors into civsync's retriable/fatal classes."""

from __future__ import annotations

import structlog
from confluent_kafka import KafkaError, KafkaException, Message

from engine.errors import CivsyncError, FatalError, RetriableError

log = structlog.get_logger(__name__)


class KafkaOperationError(CivsyncError):
    """Marker base; the concrete class says whether a retry can help."""


class KafkaRetriableError(KafkaOperationError, RetriableError):
    """Kafka refused for a passing reason (leader moving, broker restarting, timeout), or a
    transaction must be aborted and replayed."""


class KafkaFatalError(KafkaOperationError, FatalError):
    """Kafka refused for a reason retrying cannot fix (authorisation, bad config, fenced)."""


# librdkafka's own errors for a broker that is away for a while (restarting, unreachable,
# slow): librdkafka does not flag them retriable, yet waiting is the only remedy.
_BROKER_AWAY = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._RESOLVE,
        KafkaError._WAIT_COORD,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.NETWORK_EXCEPTION,
    }
)


# A client that is fatal for one of these was replaced by another instance of its part (the
# same transactional id): starting again would fence that one in turn.
_FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
_REFUSED = frozenset(  # retrying cannot change the broker's answer to these
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._INVALID_ARG,
        KafkaError._UNSUPPORTED_FEATURE,
    }
)


# What a broker does to a client it will not talk to: a refused login, a TLS handshake that
# fails (a certificate the client cannot verify). librdkafka reports these only to the
# client's error callback, and keeps trying: the operation itself just times out.
_CONNECTION_REFUSED = frozenset(
    {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED, KafkaError._SSL}
)


class RefusalWatch:
    """A client's ``error_cb``: remembers the broker refusing the client's login or TLS
    connection, so that an operation that then times out says why, as a fatal error
    (retrying with the same credentials or CA cannot help), instead of waiting for a broker
    that is there."""

    def __init__(self) -> None:
        self.refusal: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        if error.code() in _CONNECTION_REFUSED:
            self.refusal = error
        else:
            log.debug("kafka client error", error=error.str())

    def translate(self, error: KafkaError | KafkaException, doing: str) -> KafkaOperationError:
        """``translate``, unless the broker refused this client: then that, fatal."""
        translated = translate(error, doing)
        if isinstance(translated, KafkaRetriableError) and self.refusal is not None:
            return self.refused(doing)
        return translated

    def timed_out(self, doing: str, timeout_s: float) -> KafkaOperationError:
        if self.refusal is not None:
            return self.refused(doing)
        return KafkaRetriableError(f"{doing}: no answer from Kafka within {timeout_s:.0f}s")

    def refused(self, doing: str) -> KafkaFatalError:
        assert self.refusal is not None  # noqa: S101 - only called once one was seen
        error = self.refusal
        if error.code() == KafkaError._SSL:
            what = "TLS connection (is [kafka] ssl_ca_location the broker's CA?)"
        else:
            what = "login (check [kafka] sasl_username, sasl_password and sasl_mechanism)"
        return KafkaFatalError(
            f"{doing}: the broker refused this client's {what}: {error.name()} ({error.str()})"
        )


def translate(error: KafkaError | KafkaException, doing: str) -> KafkaOperationError:
    """The civsync error for a librdkafka error met while ``doing`` something."""
    kafka_error = error.args[0] if isinstance(error, KafkaException) else error
    if not isinstance(kafka_error, KafkaError):
        return KafkaFatalError(f"{doing}: {error}")
    message = f"{doing}: {kafka_error.name()} ({kafka_error.str()})"
    passing = (
        kafka_error.retriable()
        or kafka_error.txn_requires_abort()
        or kafka_error.code() in _BROKER_AWAY
    )
    if passing and not kafka_error.fatal():
        return KafkaRetriableError(message)
    # _FATAL: what a client answers after a fatal error it reported earlier
    broken = kafka_error.fatal() or kafka_error.code() in (KafkaError._STATE, KafkaError._FATAL)
    if broken and kafka_error.code() not in _FENCED | _REFUSED:
        # fatal for this client only (a transaction or idempotence state lost across a
        # broker restart): the part starts again with new clients, as a restart would
        return KafkaRetriableError(f"{message}; the client must be created again")
    return KafkaFatalError(message)


def fenced(error: KafkaError | KafkaException) -> bool:
    """Whether ``error`` says a newer instance with the client's transactional id took over
    (or the broker aborted its transaction for outliving ``transaction.timeout.ms``, which
    librdkafka reports the same way)."""
    kafka_error = error.args[0] if isinstance(error, KafkaException) else error
    return isinstance(kafka_error, KafkaError) and kafka_error.code() in _FENCED


def skip_consumer_error(message: Message, consumer: str) -> bool:
    """Whether ``message`` is an error event rather than a record. A consumer's errors are
    reports (a broker went away, a partition's leader moved) that the client recovers from
    by itself: logged and skipped. A fatal one raises."""
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise translate(error, f"{consumer} consuming")
    log.warning("consumer error; the client recovers", consumer=consumer, error=error.str())
    return True
