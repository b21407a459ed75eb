"""A running `civsync capture run` serves Prometheus metrics (events by store, table and op;
slot lag and confirmed position in bytes; its last step) and a JSON health check."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator

import pytest

from civsync.config import CivsyncSettings
from connectors.postgres import connect
from tests.http_probe import free_port, get
from tests.integration.capture_support import capture_process, drop_slot, q, wait_caught_up


@pytest.fixture
def table(settings: CivsyncSettings, unique_name: str) -> Iterator[str]:
    with connect(settings.civil, autocommit=True) as conn:
        conn.execute(q("CREATE TABLE {t} (id bigint PRIMARY KEY)", unique_name))
        yield unique_name
        conn.execute(q("DROP TABLE {t}", unique_name))
        drop_slot(conn, unique_name)


def test_metrics_count_events_and_show_slot_lag(settings: CivsyncSettings, table: str) -> None:
    port = free_port()
    process = capture_process(table, "--metrics-port", str(port))
    try:
        with connect(settings.civil, autocommit=True) as conn:
            wait_caught_up(conn, table)
            conn.execute(q("INSERT INTO {t} SELECT generate_series(1, 25)", table))
            wait_caught_up(conn, table)
        status, text = get(f"http://127.0.0.1:{port}/metrics")
        health, document = get(f"http://127.0.0.1:{port}/healthz")
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    assert status == 200
    assert health == 200
    assert json.loads(document)["part"] == "capture-civil"
    assert json.loads(document)["healthy"] is True
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    events = f'civsync_capture_events_total{{op="c",store="civil",table="public.{table}"}}'
    assert samples[events] == 25
    assert f'civsync_capture_slot_lag_bytes{{slot="{table}",store="civil"}}' in samples
    assert samples[f'civsync_capture_confirmed_lsn_bytes{{slot="{table}",store="civil"}}'] > 0
    stepped = samples['civsync_part_last_step_timestamp_seconds{part="capture-civil"}']
    assert time.time() - 60 < stepped <= time.time()
    assert not [name for name in samples if name.split("{")[0].endswith("_created")]
