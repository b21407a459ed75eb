"""Snapshots: the initial one on first connection and incremental ones on demand (DBLog)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest

from civsync.config import CivsyncSettings
from connectors.capture import snapshot
from connectors.capture.publisher import topic_for
from connectors.capture.slot import ReplicationSlot
from connectors.postgres import Connection, connect
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import (
    drop_slot,
    q,
    read_topic,
    running_capture,
    versions,
    wait_caught_up,
)

ROWS = 12_345


@pytest.fixture
def table(civil: Connection, unique_name: str) -> Iterator[str]:
    civil.execute(
        q(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, full_name text, fee numeric(8,2),"
            " born date, seen timestamptz, photo bytea, alive boolean,"
            " version bigint NOT NULL DEFAULT 0)",
            unique_name,
        )
    )
    civil.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", unique_name))
    civil.execute(
        q(
            "INSERT INTO {t} (id, full_name, fee, born, seen, photo, alive)"
            " SELECT g, 'Trần Thị Bích ' || g, g / 100.0, date '1990-01-01' + g %% 9000,"
            " timestamptz '2025-07-01 08:00+07', '\\x00ff', g %% 2 = 0"
            " FROM generate_series(1, %s) g",
            unique_name,
        ),
        (ROWS,),
    )
    yield unique_name
    civil.execute(q("DROP TABLE {t}", unique_name))
    drop_slot(civil, unique_name)


def test_first_connection_reads_every_existing_row_in_chunks(
    settings: CivsyncSettings, registry: SchemaRegistry, civil: Connection, table: str
) -> None:
    with running_capture(settings, registry, "civil", table, [table], snapshot_chunk=1000):
        wait_caught_up(civil, table, timeout_s=120)
        civil.execute(q("UPDATE {t} SET version = 1 WHERE id = 2", table))  # streamed after
        wait_caught_up(civil, table)

    records = read_topic(settings, registry, topic_for("civil", "public", table))
    reads = [r for r in records if r["op"] == "r"]
    assert sorted(v["after"]["id"] for v in reads) == list(range(1, ROWS + 1))
    assert {v["source"]["snapshot"] for v in reads} == {"incremental"}
    assert len({v["event_id"] for v in reads}) == ROWS
    row_two = next(v["after"] for v in reads if v["after"]["id"] == 2)
    streamed = next(r for r in records if r["op"] == "u")
    # A snapshot row and a streamed row of the same data look the same.
    assert row_two == {**streamed["after"], "version": 0}
    assert row_two["full_name"] == "Trần Thị Bích 2"
    assert row_two["fee"] == Decimal("0.02")
    assert row_two["seen"] == "2025-07-01T01:00:00Z"
    assert row_two["photo"] == b"\x00\xff"
    assert row_two["alive"] is True
    state = civil.execute(
        "SELECT rows_read, state FROM _civsync.snapshot_jobs WHERE slot_name = %s", (table,)
    ).fetchall()
    assert state == [(ROWS, "done")]


def test_a_snapshot_racing_updates_never_leaves_a_stale_value_last(
    settings: CivsyncSettings, registry: SchemaRegistry, civil: Connection, table: str
) -> None:
    stop = threading.Event()

    def update_randomly() -> None:
        rng = random.Random(11)  # noqa: S311 - test data
        with connect(settings.civil, autocommit=True) as writer:
            while not stop.is_set():
                writer.execute(
                    q("UPDATE {t} SET version = version + 1 WHERE id = %s", table),
                    (rng.randint(1, ROWS),),
                )

    with running_capture(settings, registry, "civil", table, [table], snapshot_chunk=500):
        # the initial snapshot, taken while nothing else writes
        wait_caught_up(civil, table, timeout_s=120)
        ids = snapshot.request(civil, table, [f"public.{table}"])
        writer = threading.Thread(target=update_randomly, daemon=True)
        writer.start()
        try:
            wait_caught_up(civil, table, timeout_s=120)
        finally:
            stop.set()
            writer.join(timeout=30)
        wait_caught_up(civil, table)
    assert snapshot.progress(civil, ids)[0][3] == "done"

    final = versions(civil, table)
    last: dict[int, int] = {}
    reads_after_updates = 0
    for value in read_topic(settings, registry, topic_for("civil", "public", table)):
        # per key, partition order is log order
        last[value["after"]["id"]] = value["after"]["version"]
        reads_after_updates += value["op"] == "r" and value["after"]["version"] > 0
    stale = {k: (v, final[k]) for k, v in last.items() if v != final[k]}
    assert not stale, f"{len(stale)} rows end on a stale value, e.g. {list(stale.items())[:3]}"
    assert len(last) == ROWS
    assert reads_after_updates > 0  # the second snapshot did read rows the writer had changed


def test_a_slot_left_unrecorded_by_a_crash_is_recorded_and_snapshotted_on_the_next_start(
    settings: CivsyncSettings, registry: SchemaRegistry, civil: Connection, table: str
) -> None:
    # What a crash right after creating the slot leaves: the slot, without its record or jobs.
    ReplicationSlot(table, (f"public.{table}",)).create(civil)

    with running_capture(settings, registry, "civil", table, [table]):
        wait_caught_up(civil, table, timeout_s=120)

    reads = [
        r
        for r in read_topic(settings, registry, topic_for("civil", "public", table))
        if r["op"] == "r"
    ]
    assert sorted(r["after"]["id"] for r in reads) == list(range(1, ROWS + 1))
