"""/healthz tells whether the capture loop is still stepping."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from connectors.capture import metrics


def _status(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_health_is_503_until_the_loop_steps_then_200() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    metrics.serve(port, "unit-store")
    assert _status(port) == 503
    metrics.record_step("unit-store")
    assert _status(port) == 200


def test_a_publisher_process_counts_reach_the_capture_process_counters() -> None:
    """What a publisher process counted since its last report is added here, once."""
    events = metrics.events("civil", "public.counted_here", "c")
    before = events._value.get()
    key = ("civsync_capture_events", ("civil", "public.counted_here", "c"))
    metrics.add_counted({}, {key: 5.0})
    metrics.add_counted({key: 5.0}, {key: 7.0})
    metrics.add_counted({key: 7.0}, {key: 7.0})
    assert events._value.get() - before == 7.0
    assert metrics.counted()[key] == before + 7.0
