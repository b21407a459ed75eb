"""Waiting out a service that is away: the one retry loop every long-running part runs in.

A Kafka broker, the schema registry or a store that restarts, or cannot be reached for a
while, is an expected condition, raised as a ``RetriableError``. The part logs it, counts it
(``civsync_part_restarts_total``), waits with exponential backoff and starts its attempt
again from its last durable position, as a restart of the process would: capture from the
slot's confirmed position, the merger from its committed offsets and state changelog, a sink
from its committed offsets. It never exits for it. Only a ``FatalError`` ends the part.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from engine.errors import RetriableError

# young collections every 50,000 allocations (700 by default); a full one after 1,000 of the
# middle generation (10), which Python also holds back until long-lived objects grew by 25 %
GC_THRESHOLDS = (50_000, 20, 1_000)

log = structlog.get_logger(__name__)

RESTARTS = Counter(
    "civsync_part_restarts",
    "Attempts a part started again after a service it needs was away",
    ["part", "error"],
)


@dataclass(frozen=True)
class Backoff:
    """Pauses between attempts: ``first_s``, doubling up to ``max_s``; back to ``first_s``
    once an attempt has run for ``healthy_after_s`` (the service came back)."""

    first_s: float = 0.5
    max_s: float = 20.0
    healthy_after_s: float = 60.0


def run_until_stopped(
    part: str,
    attempt: Callable[[], None],
    stop: threading.Event,
    backoff: Backoff = Backoff(),
) -> None:
    """Run ``attempt`` (which returns once ``stop`` is set) again after each retriable error,
    until ``stop`` is set; a fatal error propagates."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    pause = backoff.first_s
    while not stop.is_set():
        started = time.monotonic()
        try:
            attempt()
        except RetriableError as exc:
            if time.monotonic() - started >= backoff.healthy_after_s:
                pause = backoff.first_s
            RESTARTS.labels(part, type(exc).__name__).inc()
            log.warning(
                "service away; the part starts again",
                part=part,
                error=str(exc),
                error_class=type(exc).__name__,
                retry_in_s=pause,
            )
            stop.wait(pause)
            pause = min(pause * 2, backoff.max_s)
        else:
            return
