"""The retry loop every long-running part runs in: a service away is waited out with a
growing pause and counted; a fatal error ends the part; a stop ends the wait."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import REGISTRY

from connectors.resilience import Backoff, run_until_stopped
from engine.errors import FatalError, RetriableError

QUICK = Backoff(first_s=0.001, max_s=0.004)


def _restarts(part: str) -> float | None:
    labels = {"part": part, "error": "RetriableError"}
    return REGISTRY.get_sample_value("civsync_part_restarts_total", labels)


def test_an_attempt_that_meets_a_service_away_starts_again_until_it_completes() -> None:
    failures = [RetriableError("broker away")] * 3
    calls = []

    def attempt() -> None:
        calls.append(1)
        if failures:
            raise failures.pop()

    run_until_stopped("unit-retry", attempt, threading.Event(), QUICK)
    assert len(calls) == 4
    assert _restarts("unit-retry") == 3


def test_a_fatal_error_ends_the_part() -> None:
    def attempt() -> None:
        raise FatalError("slot lost")

    with pytest.raises(FatalError, match="slot lost"):
        run_until_stopped("unit-fatal", attempt, threading.Event(), QUICK)


def test_a_stop_during_the_wait_ends_the_part_without_another_attempt() -> None:
    stop, calls = threading.Event(), []

    def attempt() -> None:
        calls.append(1)
        stop.set()  # as SIGTERM would, while the service is away
        raise RetriableError("store away")

    run_until_stopped("unit-stop", attempt, stop, Backoff(first_s=60))
    assert calls == [1]
