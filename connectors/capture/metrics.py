"""Prometheus metrics of capture, and the endpoint every part (capture, merger, sinks) serves.

Names follow Prometheus' conventions: base units in the name (``_bytes``, ``_seconds``),
counters exposed with ``_total`` (prometheus_client adds it to the names declared here),
labels for the store, table or part, never for personal data. The ``_created`` series of
each counter are not exposed: nothing reads them, and they would double the series.

``serve`` answers ``/metrics`` with prometheus_client's own exposition, and ``/healthz`` with
a short JSON document: 200 while the part's loop has completed a step (``record_step``)
within the last ``stale_after_s`` seconds, 503 otherwise (not started yet, stuck, or waiting
out a service that is away).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, disable_created_metrics, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from engine.errors import ConfigError

disable_created_metrics()  # type: ignore[no-untyped-call]

EVENTS = Counter(
    "civsync_capture_events", "Change events published to Kafka", ["store", "table", "op"]
)
QUARANTINED = Counter(
    "civsync_capture_quarantined", "Records sent to quarantine", ["store", "reason"]
)
SNAPSHOT_ROWS = Counter("civsync_capture_snapshot_rows", "Rows published by snapshots", ["store"])
SLOT_LAG = Gauge(
    "civsync_capture_slot_lag_bytes",
    "WAL between the server's position and the slot's confirmed one",
    ["store", "slot"],
)
CONFIRMED_LSN = Gauge(
    "civsync_capture_confirmed_lsn_bytes",
    "WAL position (LSN, in bytes) the slot has confirmed to PostgreSQL",
    ["store", "slot"],
)
LAST_STEP = Gauge(
    "civsync_part_last_step_timestamp_seconds",
    "When the part's main loop last completed a step (Unix time)",
    ["part"],
)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
_last_step: dict[str, float] = {}  # part -> time.monotonic() of its last step


@functools.cache
def events(store: str, table: str, op: str) -> Counter:
    """The counter of ``store``'s ``table`` events of kind ``op``, looked up once (capture
    counts every event: a cached child costs a fifth of ``labels``)."""
    return EVENTS.labels(store, table, op)


def counted() -> dict[tuple[str, tuple[str, ...]], float]:
    """The event and quarantine counters' values, by counter and labels: a publisher process
    (``connectors.capture.handoff``) sends them to the capture process that serves /metrics."""
    return {
        (counter._name, tuple(sample.labels[n] for n in counter._labelnames)): sample.value
        for counter in (EVENTS, QUARANTINED)
        for metric in counter.collect()
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def add_counted(
    before: dict[tuple[str, tuple[str, ...]], float], now: dict[tuple[str, tuple[str, ...]], float]
) -> None:
    """Count here what a publisher process counted since its values were ``before``."""
    counters = {counter._name: counter for counter in (EVENTS, QUARANTINED)}
    for (name, labels), value in now.items():
        if (grown := value - before.get((name, labels), 0.0)) > 0:
            counters[name].labels(*labels).inc(grown)


def record_step(part: str) -> None:
    """The main loop of ``part`` has just completed a step."""
    _last_step[part] = time.monotonic()
    LAST_STEP.labels(part).set_to_current_time()


def health(part: str, stale_after_s: float) -> tuple[bool, dict[str, Any]]:
    """Whether ``part`` stepped within ``stale_after_s``, and the document that says so."""
    last = _last_step.get(part)
    age = None if last is None else time.monotonic() - last
    healthy = age is not None and age < stale_after_s
    return healthy, {
        "part": part,
        "healthy": healthy,
        "last_step_age_s": None if age is None else round(age, 1),
        "stale_after_s": stale_after_s,
    }


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line."""


def serve(port: int, part: str, stale_after_s: float = 60.0, host: str = "127.0.0.1") -> None:
    """Serve /metrics and /healthz of ``part`` on ``host``:``port`` from a daemon thread."""
    metrics = make_wsgi_app()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        healthy, document = health(part, stale_after_s)
        status = "200 OK" if healthy else "503 Service Unavailable"
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(document).encode() + b"\n"]

    try:
        server = make_server(
            host, port, app, server_class=ThreadingWSGIServer, handler_class=_Quiet
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}): choose another --metrics-port"
        ) from exc
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
