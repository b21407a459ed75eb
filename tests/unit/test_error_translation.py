"""Vendor errors become civsync's retriable or fatal errors, decided by code where the vendor
gives one (a refused PostgreSQL login gives none: the server's words decide)."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.kafka import avro
from connectors.kafka.avro import TransactionalProducer
from connectors.kafka.errors import KafkaRetriableError, translate
from connectors.postgres import StoreRejectedError, StoreUnavailableError, classify
from connectors.registry import RegistryRejectedError, RegistryUnavailableError, SchemaRegistry
from connectors.registry import translate as translate_registry
from connectors.settings import RegistrySettings
from engine.errors import FatalError, RetriableError


@pytest.mark.parametrize(
    ("retriable", "fatal", "expected"),
    [
        (True, False, KafkaRetriableError),
        (False, False, KafkaRetriableError),  # a broker that is away: librdkafka says neither
        (True, True, KafkaRetriableError),  # fatal for this client: the part makes new ones
        (False, True, KafkaRetriableError),
    ],
)
def test_kafka_errors_follow_librdkafka_flags(
    retriable: bool, fatal: bool, expected: type[Exception]
) -> None:
    cause = KafkaError(KafkaError.REQUEST_TIMED_OUT, retriable=retriable, fatal=fatal)
    error = translate(KafkaException(cause), "listing topics")
    assert type(error) is expected
    assert str(error).startswith("listing topics: REQUEST_TIMED_OUT")


@pytest.mark.parametrize(
    "code",
    [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT],
)
def test_a_broker_that_is_away_is_waited_for(code: int) -> None:
    """Issue 17: capture exited on `_TRANSPORT` while the broker restarted."""
    assert isinstance(translate(KafkaError(code), "listing topics"), RetriableError)


def test_an_error_retrying_cannot_change_is_fatal() -> None:
    error = translate(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED), "producing")
    assert isinstance(error, FatalError)


def test_a_fenced_client_is_never_retriable() -> None:
    """Another instance of the part took its transactional id over: starting again would
    fence that one in turn."""
    for code in (KafkaError._FENCED, KafkaError.PRODUCER_FENCED):
        error = translate(KafkaError(code, fatal=True, retriable=True), "producing")
        assert isinstance(error, FatalError)


def test_a_client_fatal_error_after_a_broker_restart_restarts_the_part() -> None:
    cause = KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True)
    error = translate(KafkaException(cause), "aborting a transaction")
    assert isinstance(error, RetriableError)
    assert "created again" in str(error)


@pytest.mark.parametrize(
    ("sqlstate", "expected"),
    [
        ("40001", StoreUnavailableError),  # serialization_failure
        ("40P01", StoreUnavailableError),  # deadlock_detected
        ("08006", StoreUnavailableError),  # connection_failure
        ("57P01", StoreUnavailableError),  # admin_shutdown
        ("53300", StoreUnavailableError),  # too_many_connections
        ("57014", StoreRejectedError),  # query_canceled: cancelled on purpose
        ("23505", StoreRejectedError),  # unique_violation
        ("42P01", StoreRejectedError),  # undefined_table
        ("22P02", StoreRejectedError),  # invalid_text_representation
    ],
)
def test_postgres_errors_by_sqlstate(sqlstate: str, expected: type[Exception]) -> None:
    error = classify(psycopg.errors.lookup(sqlstate)("boom"), "writing")
    assert isinstance(error, expected)
    assert error.sqlstate == sqlstate
    assert isinstance(error, RetriableError) is (expected is StoreUnavailableError)


def test_a_connection_failure_without_sqlstate_is_retriable() -> None:
    assert isinstance(classify(psycopg.OperationalError("gone"), "connecting"), RetriableError)


@pytest.mark.parametrize(
    ("server_says", "refused"),
    [
        ('password authentication failed for user "sink_civil"', True),
        ('no pg_hba.conf entry for host "10.0.0.9", user "capture", database "civil"', True),
        ('database "civl" does not exist', True),
        ('permission denied for database "civil"', True),
        ("the database system is starting up", False),
        ("sorry, too many clients already", False),
    ],
)
def test_a_refused_login_is_fatal_and_a_store_starting_up_is_waited_for(
    server_says: str, refused: bool
) -> None:
    """libpq gives no SQLSTATE for a failed connection; the server's words tell a wrong
    password (exit 4, one clear line) from a store that is only away (wait)."""
    failed = psycopg.OperationalError(
        'connection failed: connection to server at "127.0.0.1", port 5433 failed: '
        f"FATAL:  {server_says}"
    )
    error = classify(failed, "connecting to civil")
    assert isinstance(error, StoreRejectedError) is refused
    assert isinstance(error, RetriableError) is not refused
    assert server_says in str(error)


def test_a_registry_whose_certificate_does_not_verify_is_refused_not_waited_for() -> None:
    """httpx wraps ssl's error; a part must stop and say which CA to set, not wait."""
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as cause:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from cause
    except httpx.ConnectError as wrapped:
        error = translate_registry(wrapped, "registering a schema")
    assert isinstance(error, RegistryRejectedError)
    assert "ssl_ca_location" in str(error)
    away = translate_registry(httpx.ConnectError("Connection refused"), "registering a schema")
    assert isinstance(away, RegistryUnavailableError)


def test_the_registry_client_verifies_https_with_the_settings_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    https = RegistrySettings(ssl_ca_location=ca)
    assert https.client_config()["ssl.ca.location"] == str(ca)
    plain = RegistrySettings(url="http://127.0.0.1:8081/apis/ccompat/v7", ssl_ca_location=ca)
    assert "ssl.ca.location" not in plain.client_config()
    with pytest.raises(RegistryRejectedError, match=r"CA file .*ca\.crt does not exist"):
        SchemaRegistry(https)


class _Coordinator:
    """librdkafka's transactional calls, as a stand-in: ``send_offsets_to_transaction``
    blocks until ``answer`` is set (librdkafka #5456), or raises ``error``."""

    def __init__(self, error: KafkaError | None = None) -> None:
        self.answer, self.error, self.ended = threading.Event(), error, ""

    def send_offsets_to_transaction(self, offsets: object, group: object, timeout: float) -> None:
        if self.error is not None:
            raise KafkaException(self.error)
        self.answer.wait()

    def commit_transaction(self, timeout: float) -> None:
        self.ended = "committed"

    def abort_transaction(self, timeout: float) -> None:
        self.ended = "aborted"

    def poll(self, timeout: float) -> int:
        return 0


def _producer(coordinator: _Coordinator, monkeypatch: pytest.MonkeyPatch) -> TransactionalProducer:
    """A transactional producer over ``coordinator``, with a 0.1 s timeout and no grace."""
    monkeypatch.setattr(avro, "_GRACE_S", 0.0)
    producer = TransactionalProducer.__new__(TransactionalProducer)
    producer._producer, producer._failures = coordinator, []  # type: ignore[assignment]
    producer._timeout_s, producer._stuck = 0.1, False
    producer._transaction_timeout_s, producer._began = 10.0, time.monotonic()
    return producer


def test_a_transactional_call_that_never_returns_is_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    coordinator = _Coordinator()
    producer = _producer(coordinator, monkeypatch)
    started = time.monotonic()
    with pytest.raises(KafkaRetriableError, match="sending offsets to the transaction"):
        producer.commit([], None)
    assert time.monotonic() - started < 5.0  # not blocked with the call
    assert coordinator.ended == ""  # never committed after the offsets went missing
    producer.abort()  # refused by librdkafka while a call is blocked: not attempted
    assert coordinator.ended == ""
    with pytest.raises(KafkaRetriableError, match="never returned"):
        producer.commit([], None)  # abandoned for good: the part makes a new producer
    coordinator.answer.set()


def test_a_transactional_call_that_answers_commits_or_raises_its_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answering = _Coordinator()
    answering.answer.set()
    _producer(answering, monkeypatch).commit([], None)
    assert answering.ended == "committed"
    refusing = _Coordinator(KafkaError(KafkaError.NOT_COORDINATOR))
    with pytest.raises(KafkaRetriableError, match="NOT_COORDINATOR"):
        _producer(refusing, monkeypatch).commit([], None)
    assert refusing.ended == ""


def test_a_transaction_the_broker_timed_out_restarts_the_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker aborts a transaction open past ``transaction.timeout.ms`` and bumps the
    producer's epoch; librdkafka reports that as fenced (seen when the broker was paused for
    15 s under a 10 s timeout: the merger exited). No rival took the id over, so the part
    starts again; a fencing within the timeout is a rival, and fatal."""
    fencing = KafkaError(KafkaError._FENCED, fatal=True)
    timed_out = _producer(_Coordinator(fencing), monkeypatch)
    timed_out._began -= 11.0  # begun 11 s ago, with a 10 s timeout
    with pytest.raises(KafkaRetriableError, match=r"open 11s, past its 10s timeout"):
        timed_out.commit([], None)
    rival = _producer(_Coordinator(fencing), monkeypatch)
    with pytest.raises(FatalError, match="_FENCED"):
        rival.commit([], None)


def test_a_client_that_reported_a_fatal_error_is_made_again() -> None:
    """After a fatal error (reported to the call that met it), librdkafka answers every
    later call with ``_FATAL``: the part starts again with new clients."""
    error = translate(KafkaException(KafkaError(KafkaError._FATAL)), "producing to person")
    assert isinstance(error, RetriableError)
    assert "created again" in str(error)
