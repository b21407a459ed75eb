"""No loss across kill -9: the capture process is killed at random points while the store is
written to; afterwards the topic holds every committed change, and a change delivered twice
carries the same event id both times."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from civsync.config import CivsyncSettings
from connectors.capture.publisher import topic_for
from connectors.capture.slot import ReplicationSlot
from connectors.capture.stream import prepare
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import (
    capture_process,
    drop_slot,
    q,
    read_topic,
    versions,
    wait_caught_up,
)

KILLS = 10


class Writer(threading.Thread):
    """Commits small and occasional large transactions; remembers what was committed."""

    def __init__(self, settings: CivsyncSettings, table: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.table = settings, table
        self.committed: set[tuple[str, int, int]] = set()  # (op, id, version)
        self.stop = threading.Event()
        self.rng = random.Random(7)  # noqa: S311 - test data, not cryptography

    def run(self) -> None:
        next_id = 0
        with connect(self.settings.civil) as conn:
            while not self.stop.is_set():
                if self.rng.random() < 0.02:  # a large transaction
                    first, next_id = next_id, next_id + 1000
                    conn.execute(
                        q(
                            "INSERT INTO {t} SELECT g, 0"
                            " FROM generate_series(%s::bigint, %s::bigint) g",
                            self.table,
                        ),
                        (first, next_id - 1),
                    )
                    conn.commit()
                    self.committed |= {("c", i, 0) for i in range(first, next_id)}
                else:
                    row_id = self.rng.randrange(max(next_id, 1))
                    version = self.rng.randrange(1, 10**9)
                    updated = conn.execute(
                        q("UPDATE {t} SET version = %s WHERE id = %s", self.table),
                        (version, row_id),
                    ).rowcount
                    conn.commit()
                    if updated:
                        self.committed.add(("u", row_id, version))
                time.sleep(0.005)


def _kill_repeatedly(table: str, rng: random.Random, *extra: str) -> None:
    for _ in range(KILLS):
        process = capture_process(table, *extra)
        time.sleep(rng.uniform(1.0, 3.0))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture
def table(settings: CivsyncSettings, unique_name: str) -> Iterator[str]:
    with connect(settings.civil, autocommit=True) as conn:
        conn.execute(
            q("CREATE TABLE {t} (id bigint PRIMARY KEY, version bigint NOT NULL)", unique_name)
        )
        conn.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", unique_name))
        # The slot exists before the first write.
        prepare(conn, ReplicationSlot(unique_name, (f"public.{unique_name}",)))
        yield unique_name
        conn.execute(q("DROP TABLE {t}", unique_name))
        drop_slot(conn, unique_name)


def test_kill_9_at_random_points_loses_nothing(
    settings: CivsyncSettings, registry: SchemaRegistry, table: str
) -> None:
    rng = random.Random(2026)  # noqa: S311 - kill timing, not cryptography
    writer = Writer(settings, table)
    writer.start()
    try:
        _kill_repeatedly(table, rng)
    finally:
        writer.stop.set()
        writer.join(timeout=30)

    _assert_all_delivered_once(settings, registry, table, writer)
    assert len(writer.committed) > KILLS * 100


def _assert_all_delivered_once(
    settings: CivsyncSettings, registry: SchemaRegistry, table: str, writer: Writer
) -> None:
    """After the kills: a last capture catches up; every committed change is on the topic,
    and a change delivered twice kept its id."""
    final = capture_process(table)
    try:
        with connect(settings.civil, autocommit=True) as conn:
            # A change made after the last start: confirming it proves the new process runs.
            conn.execute(q("INSERT INTO {t} VALUES (-1, 0)", table))
            writer.committed.add(("c", -1, 0))
            wait_caught_up(conn, table)
    finally:
        final.send_signal(signal.SIGTERM)
        assert final.wait(timeout=60) == 0

    records = read_topic(settings, registry, topic_for("civil", "public", table))
    seen: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    for value in records:
        seen[(value["op"], value["after"]["id"], value["after"]["version"])].add(value["event_id"])
    missing = writer.committed - seen.keys()
    assert not missing, f"{len(missing)} committed changes never reached Kafka"
    # A snapshot chunk a kill interrupted is read again under a new watermark: those rows are
    # a new read with new ids, not a redelivery (this run's table is snapshotted while written).
    changed = {key: ids for key, ids in seen.items() if len(ids) > 1 and key[0] != "r"}
    assert not changed, f"a redelivered change changed its id: {next(iter(changed.items()))}"


def _publishers(pid: int) -> list[int]:
    """The processes capture ``pid`` spawned to publish (not multiprocessing's own
    resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            spawned = b"spawn_main" in (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[1]) == pid and spawned:
            found.append(int(stat.parent.name))
    return found


def _ended(pid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


def test_with_a_separate_publisher_kill_9_of_either_process_loses_nothing(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``[capture] separate_publisher``: the publisher process killed (capture starts a new
    one and reads again from the slot) or capture itself killed (its publisher ends too)."""
    monkeypatch.setenv("CIVSYNC_CAPTURE__SEPARATE_PUBLISHER", "true")
    rng = random.Random(15)  # noqa: S311 - kill timing, not cryptography
    writer = Writer(settings, table)
    writer.start()
    try:
        for _ in range(3):
            process = capture_process(table)
            time.sleep(rng.uniform(2.0, 3.0))
            (publisher,) = _publishers(process.pid)
            os.kill(publisher, signal.SIGKILL)  # capture goes on with a new publisher
            time.sleep(rng.uniform(2.0, 3.0))
            (publisher,) = _publishers(process.pid)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            assert _ended(publisher), "the publisher process outlived its capture"
    finally:
        writer.stop.set()
        writer.join(timeout=30)

    _assert_all_delivered_once(settings, registry, table, writer)


SNAPSHOT_ROWS = 40_000


def test_kill_9_during_a_snapshot_reads_every_row_and_nothing_stale_lands_last(
    settings: CivsyncSettings, registry: SchemaRegistry, unique_name: str
) -> None:
    table = unique_name
    with connect(settings.civil, autocommit=True) as conn:
        conn.execute(q("CREATE TABLE {t} (id bigint PRIMARY KEY, version bigint NOT NULL)", table))
        conn.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", table))
        conn.execute(
            q("INSERT INTO {t} SELECT g, 0 FROM generate_series(1, %s) g", table), (SNAPSHOT_ROWS,)
        )
        try:
            # The first start creates the slot and queues the initial snapshot.
            writer = Updater(settings, table)
            writer.start()
            try:
                _kill_repeatedly(table, random.Random(99), "--snapshot-chunk", "500")  # noqa: S311
            finally:
                writer.stop.set()
                writer.join(timeout=30)
            final = capture_process(table, "--snapshot-chunk", "500")
            try:
                wait_caught_up(conn, table, timeout_s=300)
            finally:
                final.send_signal(signal.SIGTERM)
                assert final.wait(timeout=60) == 0
            expected = versions(conn, table)
        finally:
            conn.execute(q("DROP TABLE {t}", table))
            drop_slot(conn, table)

    last: dict[int, int] = {}
    for value in read_topic(settings, registry, topic_for("civil", "public", table)):
        last[value["after"]["id"]] = value["after"]["version"]
    assert len(last) == SNAPSHOT_ROWS, "some rows were never read"
    stale = {k for k, v in last.items() if v != expected[k]}
    assert not stale, f"{len(stale)} rows end on a stale value"
    assert writer.updates > KILLS * 10


class Updater(threading.Thread):
    """Bumps random rows' versions until stopped."""

    def __init__(self, settings: CivsyncSettings, table: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.table, self.updates = settings, table, 0
        self.stop = threading.Event()

    def run(self) -> None:
        rng = random.Random(5)  # noqa: S311 - test data
        with connect(self.settings.civil, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute(
                    q("UPDATE {t} SET version = version + 1 WHERE id = %s", self.table),
                    (rng.randint(1, SNAPSHOT_ROWS),),
                )
                self.updates += 1
                time.sleep(0.002)


def test_a_100k_row_transaction_streams_through_bounded_memory(
    settings: CivsyncSettings, registry: SchemaRegistry, table: str
) -> None:
    rows = 100_000
    process = capture_process(table)
    try:
        with connect(settings.civil, autocommit=True) as conn:
            wait_caught_up(conn, table)
            conn.execute(
                q("INSERT INTO {t} SELECT g, 0 FROM generate_series(1, %s) g", table), (rows,)
            )
            wait_caught_up(conn, table, timeout_s=300)
        peak_mb = _peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0

    records = read_topic(settings, registry, topic_for("civil", "public", table))
    assert len({r["event_id"] for r in records}) == rows
    assert len({r["source"]["txId"] for r in records}) == 1
    assert peak_mb < 300, f"capture peaked at {peak_mb:.0f} MB for one large transaction"


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")
