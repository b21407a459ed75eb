"""Vendor errors become civsync's retriable or fatal errors, decided by code, not by text."""

from __future__ import annotations

import psycopg
import pytest
from confluent_kafka import KafkaError, KafkaException

from connectors.kafka.errors import KafkaFatalError, KafkaRetriableError, translate
from connectors.postgres import StoreRejectedError, StoreUnavailableError, classify
from engine.errors import FatalError, RetriableError


@pytest.mark.parametrize(
    ("retriable", "fatal", "expected"),
    [
        (True, False, KafkaRetriableError),
        (False, False, KafkaFatalError),
        (True, True, KafkaFatalError),  # librdkafka's fatal flag wins over retriable
        (False, True, KafkaFatalError),
    ],
)
def test_kafka_errors_follow_librdkafka_flags(
    retriable: bool, fatal: bool, expected: type[Exception]
) -> None:
    cause = KafkaError(KafkaError.REQUEST_TIMED_OUT, retriable=retriable, fatal=fatal)
    error = translate(KafkaException(cause), "listing topics")
    assert type(error) is expected
    assert str(error).startswith("listing topics: REQUEST_TIMED_OUT")


def test_a_fatal_kafka_error_is_never_retriable() -> None:
    error = translate(KafkaError(KafkaError._FENCED, fatal=True, retriable=True), "producing")
    assert isinstance(error, FatalError)


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
