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
