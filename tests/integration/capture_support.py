"""Helpers for capture tests: a capture stream in a thread, a table, and reading its topic."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql

from civsync.config import CivsyncSettings
from connectors.capture.publisher import ChangePublisher, topic_for
from connectors.capture.stream import CaptureConfig, CaptureStream
from connectors.kafka.avro import AvroConsumer, ConsumedRecord
from connectors.postgres import Connection
from connectors.registry import SchemaRegistry


def q(statement: str, table: str) -> sql.Composed:
    """``statement`` with ``{t}`` replaced by ``table`` as a quoted identifier."""
    return sql.SQL(statement).format(t=sql.Identifier(table))


@contextmanager
def running_capture(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    store: str,
    slot: str,
    tables: list[str],
    *,
    snapshot_chunk: int = 5_000,
) -> Iterator[CaptureStream]:
    """A capture stream of ``tables`` running in a thread until the block ends."""
    publisher = ChangePublisher(settings.kafka, registry, partitions=3)
    config = CaptureConfig(
        store=store,
        slot=slot,
        tables=tuple(f"public.{t}" for t in tables),
        idle_sleep_s=0.05,
        snapshot_chunk=snapshot_chunk,
    )
    stream = CaptureStream(config, settings.stores()[store], publisher)
    stop, failure = threading.Event(), []

    def run() -> None:
        try:
            stream.run(stop)
        except BaseException as exc:  # surfaced in the test thread below
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield stream
    finally:
        stop.set()
        thread.join(timeout=60)
    if failure:
        raise failure[0]


def capture_process(table: str, *extra: str, store: str = "civil") -> subprocess.Popen[bytes]:
    """`civsync capture run <store>` of ``table`` alone, as its own process (slot = table)."""
    return civsync_process(
        "capture",
        "run",
        store,
        "--slot",
        table,
        "--table",
        f"public.{table}",
        "--partitions",
        "3",
        *extra,
    )


def civsync_process(*args: str) -> subprocess.Popen[bytes]:
    """A `civsync` command as its own process, logging warnings and errors only."""
    return subprocess.Popen(
        [sys.executable, "-m", "civsync.cli", *args],
        env={**os.environ, "CIVSYNC_LOG_LEVEL": "WARNING"},
    )


def wait_caught_up(conn: Connection, slot: str, timeout_s: float = 60.0) -> None:
    """Until the slot has confirmed everything committed so far: capture has caught up.

    Also waits for the slot to exist, so a capture still starting up is waited for.
    """
    target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    assert target is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s",
            (target[0], slot),
        ).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"slot {slot} did not catch up within {timeout_s:.0f}s")


def drop_slot(conn: Connection, slot: str) -> None:
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    conn.execute("DELETE FROM _civsync.capture_state WHERE slot_name = %s", (slot,))
    conn.execute("DELETE FROM _civsync.snapshot_jobs WHERE slot_name = %s", (slot,))


def read_topic(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    topic: str,
    *,
    until: int,
    settle_polls: int = 6,
) -> list[ConsumedRecord]:
    """Records of ``topic`` from the start: until ``until`` arrived, or until nothing more came
    for ``settle_polls`` polls after the first record (at most a minute before the first)."""
    consumer = AvroConsumer(settings.kafka, registry, group_id=f"{topic}-check-{id(until)}")
    consumer.subscribe([topic])
    records: list[ConsumedRecord] = []
    idle = 0
    try:
        while len(records) < until and idle < (settle_polls if records else 120):
            record = consumer.poll(0.5)
            if record is None:
                idle += 1
                continue
            idle = 0
            records.append(record)
    finally:
        consumer.close()
    return records


def events_of(
    settings: CivsyncSettings, registry: SchemaRegistry, store: str, table: str, count: int
) -> list[dict[str, Any]]:
    records = read_topic(settings, registry, topic_for(store, "public", table), until=count)
    return sorted((r.value for r in records), key=_log_order)


def _log_order(value: dict[str, Any]) -> tuple[int, int]:
    return value["source"]["commit_lsn"], int(value["event_id"].rsplit(":", 1)[1])
