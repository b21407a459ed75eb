"""Prometheus metrics of capture, and the HTTP endpoint that serves them with a health check.

``/metrics`` is Prometheus' text format; ``/healthz`` answers 200 while the capture loop has
completed a step within the last ``stale_after_s`` seconds, 503 otherwise.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import Counter, Gauge, make_wsgi_app

EVENTS = Counter("civsync_capture_events", "Change events published", ["store", "op"])
QUARANTINED = Counter(
    "civsync_capture_quarantined", "Records sent to quarantine", ["store", "reason"]
)
SLOT_LAG = Gauge(
    "civsync_capture_slot_lag_bytes",
    "WAL between the server's position and the slot's confirmed one",
    ["store", "slot"],
)
CONFIRMED_LSN = Gauge(
    "civsync_capture_confirmed_lsn", "Slot position confirmed to PostgreSQL", ["store", "slot"]
)
SNAPSHOT_ROWS = Counter("civsync_capture_snapshot_rows", "Rows published by snapshots", ["store"])
LAST_STEP = Gauge(
    "civsync_capture_last_step_timestamp_seconds",
    "When the capture loop last completed a read of the slot",
    ["store"],
)

Environ = dict[str, Any]
_last_step: dict[str, float] = {}


def record_step(store: str) -> None:
    """The capture loop of ``store`` has just completed a read of its slot."""
    now = time.time()
    _last_step[store] = now
    LAST_STEP.labels(store=store).set(now)


StartResponse = Callable[..., Any]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line."""


def serve(port: int, store: str, stale_after_s: float = 60.0) -> None:
    """Serve /metrics and /healthz on ``port`` (all loopback) from a daemon thread."""
    metrics = make_wsgi_app()

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            age = time.time() - _last_step.get(store, 0.0)
            healthy = age < stale_after_s
            start_response(
                "200 OK" if healthy else "503 Service Unavailable", [("Content-Type", "text/plain")]
            )
            return [b"ok\n" if healthy else f"no capture step for {age:.0f}s\n".encode()]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    server = make_server("127.0.0.1", port, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
