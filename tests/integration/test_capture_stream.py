"""Log-based capture of every row operation into Avro topics, against the real services."""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from psycopg import sql

from civsync.config import CivsyncSettings
from connectors.capture.publisher import SchemaRefusedError
from connectors.capture.slot import APPLY_ORIGIN
from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.postgres import Connection, connect
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from connectors.settings import CaptureSettings
from engine.mapping import person_partition
from tests.integration.capture_support import (
    drop_slot,
    events_of,
    q,
    read_topic,
    running_capture,
    wait_caught_up,
)
from tests.integration.merge_support import wait_for

DDL = """CREATE TABLE {t} (
    id bigint PRIMARY KEY, full_name text, birth_date date, fee numeric(12,2),
    registered_at timestamptz, photo bytea, note text, active boolean, score double precision
)"""


@pytest.fixture
def table(civil: Connection, unique_name: str) -> Iterator[str]:
    civil.execute(q(DDL, unique_name))
    civil.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", unique_name))
    yield unique_name
    civil.execute(q("DROP TABLE {t}", unique_name))
    drop_slot(civil, unique_name)


@pytest.fixture
def side_table(civil: Connection, unique_name: str) -> Iterator[Callable[[str, str], str]]:
    """Makes extra tables (``suffix``, column list) for a test; drops them afterwards."""
    made: list[str] = []

    def make(suffix: str, columns: str) -> str:
        name = f"{unique_name}_{suffix}"
        civil.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(name), sql.SQL(columns))
        )
        civil.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", name))
        made.append(name)
        return name

    yield make
    for name in made:
        civil.execute(q("DROP TABLE {t}", name))


def test_every_operation_is_captured_in_order_with_exact_values(
    settings: CivsyncSettings, registry: SchemaRegistry, civil: Connection, table: str
) -> None:
    big = secrets.token_hex(8000)  # incompressible: stored out of line (TOAST)
    with running_capture(settings, registry, "civil", table, [table]):
        wait_caught_up(civil, table)
        civil.execute(
            q(
                "INSERT INTO {t} VALUES (1, %s, '1999-03-01', 12345678.90, "
                "'2025-07-01 08:00:00+07', '\\x00ff', %s, true, 0.1)",
                table,
            ),
            ("Nguyễn Thị Hương", big),
        )
        civil.execute(
            q("UPDATE {t} SET full_name = %s WHERE id = 1", table),
            ("Nguye\u0302\u0303n Thi\u0323 Hương",),
        )  # NFD input
        civil.execute(q("UPDATE {t} SET id = 2 WHERE id = 1", table))
        civil.execute(q("INSERT INTO {t} (id) VALUES (3)", table))
        civil.execute(q("DELETE FROM {t} WHERE id = 3", table))
        wait_caught_up(civil, table)

    events = events_of(settings, registry, "civil", table)

    assert [
        (e["op"], e["after"] and e["after"]["id"], e["before"] and e["before"]["id"])
        for e in events
    ] == [
        ("c", 1, None),
        ("u", 1, 1),
        ("d", None, 1),
        ("c", 2, None),
        ("c", 3, None),
        ("d", None, 3),
    ]
    created = events[0]["after"]  # typed as Debezium's PostgreSQL connector types them
    assert created["full_name"] == "Nguyễn Thị Hương"
    assert created["birth_date"] == 10_651  # io.debezium.time.Date: days since 1970-01-01
    assert created["fee"] == Decimal("12345678.90")  # Connect Decimal, scale 2
    assert created["registered_at"] == "2025-07-01T01:00:00Z"  # io.debezium.time.ZonedTimestamp
    assert created["photo"] == b"\x00\xff"
    assert (created["active"], created["score"]) == (True, 0.1)
    value = _writer_schema_fields(registry, f"civsync.civil.{table}-value")
    assert value["fee"]["connect.name"] == "org.apache.kafka.connect.data.Decimal"
    assert value["birth_date"]["connect.name"] == "io.debezium.time.Date"
    updated = events[1]
    assert updated["after"]["full_name"] == "Nguyễn Thị Hương"  # normalised to NFC
    assert updated["after"]["note"] == big  # unchanged TOAST value, taken from the old row
    assert updated["unavailable"] == []
    assert events[3]["after"]["note"] == big
    nulls = events[4]["after"]
    assert nulls["full_name"] is None
    assert nulls["birth_date"] is None
    assert len({e["event_id"] for e in events}) == 6
    assert all(e["source"]["store"] == "civil" and e["source"]["table"] == table for e in events)
    assert all(e["hlc"]["node"] == "civil" for e in events)


def _writer_schema_fields(registry: SchemaRegistry, subject: str) -> dict[str, Any]:
    """The typed ``Value`` fields of the latest schema under ``subject``: name -> its
    non-null branch, as the registry serves it to any reader."""
    latest = registry.client.get_latest_version(subject).schema.schema_str
    assert latest is not None
    envelope = json.loads(latest)
    value = next(f for f in envelope["fields"] if f["name"] == "before")["type"][1]
    return {f["name"]: f["type"][1] for f in value["fields"]}


def test_writes_bound_to_civsyncs_origin_are_not_captured(
    settings: CivsyncSettings, registry: SchemaRegistry, civil: Connection, table: str
) -> None:
    with running_capture(settings, registry, "civil", table, [table]):
        wait_caught_up(civil, table)
        with civil.transaction():
            civil.execute("SELECT pg_replication_origin_session_setup(%s)", (APPLY_ORIGIN,))
            civil.execute(q("INSERT INTO {t} (id, full_name) VALUES (10, 'echo')", table))
        civil.execute("SELECT pg_replication_origin_session_reset()")
        civil.execute(q("INSERT INTO {t} (id, full_name) VALUES (11, 'user')", table))
        wait_caught_up(civil, table)

    events = events_of(settings, registry, "civil", table)
    assert [e["after"]["id"] for e in events] == [11]


def test_an_idle_store_does_not_pin_wal(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    table: str,
    side_table: Callable[[str, str], str],
) -> None:
    other = side_table("other", "id int PRIMARY KEY")
    with running_capture(settings, registry, "civil", table, [table]):
        civil.execute(q("INSERT INTO {t} SELECT generate_series(1, 1000)", other))
        wait_caught_up(civil, table)
        lag = civil.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
            "FROM pg_replication_slots WHERE slot_name = %s",
            (table,),
        ).fetchone()
    assert lag is not None
    assert int(str(lag[0])) < 64 * 1024


def test_a_row_that_cannot_be_keyed_is_quarantined_and_the_stream_goes_on(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    table: str,
    side_table: Callable[[str, str], str],
) -> None:
    keyless = side_table("nokey", "note text")
    with running_capture(settings, registry, "civil", table, [table, keyless]):
        wait_caught_up(civil, table)
        civil.execute(q("INSERT INTO {t} VALUES ('no key here')", keyless))
        civil.execute(q("INSERT INTO {t} (id) VALUES (21)", table))
        wait_caught_up(civil, table)

    assert [e["after"]["id"] for e in events_of(settings, registry, "civil", table)] == [21]
    quarantined = [
        r
        for r in read_topic(settings, registry, QUARANTINE_TOPIC)
        if r["table"] == f"public.{keyless}"
    ]
    assert len(quarantined) == 1
    assert quarantined[0]["reason"] == "capture.malformed_change"
    assert "no key columns" in quarantined[0]["detail"]
    assert quarantined[0]["store"] == "civil"
    assert quarantined[0]["lsn"] is not None


@pytest.mark.parametrize("store", ["civil", "population"])
def test_each_store_is_captured_into_its_own_topics(
    settings: CivsyncSettings, registry: SchemaRegistry, store: str, unique_name: str
) -> None:
    with connect(settings.stores()[store], autocommit=True) as conn:
        conn.execute(
            q("CREATE TABLE {t} (pin text PRIMARY KEY, current_residence text)", unique_name)
        )
        conn.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", unique_name))
        try:
            with running_capture(settings, registry, store, unique_name, [unique_name]):
                wait_caught_up(conn, unique_name)
                conn.execute(
                    q("INSERT INTO {t} VALUES ('001099012345', 'Phường Ba Đình')", unique_name)
                )
                conn.execute(
                    q("UPDATE {t} SET current_residence = 'Phường Hoàn Kiếm'", unique_name)
                )
                wait_caught_up(conn, unique_name)
        finally:
            conn.execute(q("DROP TABLE {t}", unique_name))
            drop_slot(conn, unique_name)

    events = events_of(settings, registry, store, unique_name)
    assert [(e["op"], e["after"]["current_residence"]) for e in events] == [
        ("c", "Phường Ba Đình"),
        ("u", "Phường Hoàn Kiếm"),
    ]
    assert {e["source"]["store"] for e in events} == {store}
    assert {e["source"]["db"] for e in events} == {settings.stores()[store].dbname}
    assert all(e["event_id"].startswith(f"{store}:") for e in events)


def test_a_table_routed_by_a_column_puts_each_values_events_on_its_partition(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    side_table: Callable[[str, str], str],
) -> None:
    """Issue 12, partition routing: acts keyed by their own id, routed by the person's PIN,
    land on the PIN's partition (the merger's, ``person_partition``), deletes too."""
    acts = side_table("acts", "id bigint PRIMARY KEY, pin text, note text")
    routes = CaptureSettings(partition_by={f"civil.public.{acts}": "pin"})
    pins = [f"07919500{n:04d}" for n in range(12)]
    try:
        with running_capture(settings, registry, "civil", acts, [acts], capture=routes):
            wait_caught_up(civil, acts)
            for n in range(60):
                row = (n, pins[n % 12])
                civil.execute(q("INSERT INTO {t} VALUES (%s, %s, 'act')", acts), row)
            civil.execute(q("UPDATE {t} SET note = 'corrected' WHERE id < 30", acts))
            civil.execute(q("DELETE FROM {t} WHERE id >= 50", acts))
            wait_caught_up(civil, acts)
    finally:
        drop_slot(civil, acts)

    decoder = AvroDecoder(registry)
    placed = []
    for message in read_to_end(settings.kafka, f"civsync.civil.{acts}"):
        value = decoder.decode(message.value() or b"", acts)
        row = value["after"] or value["before"]
        placed.append((value["op"], row["pin"], message.partition()))
    ops = Counter(op for op, _, _ in placed)
    assert ops == {"c": 60, "u": 30, "d": 10}, f"events by op: {ops}"
    assert len({partition for _, _, partition in placed}) > 1  # not all on one partition
    misplaced = [(op, pin, p) for op, pin, p in placed if p != person_partition(pin, 3)]
    assert not misplaced, f"{len(misplaced)} events off their PIN's partition: {misplaced[:3]}"


def test_a_table_whose_columns_change_gets_a_new_schema_version_and_a_refused_one_stops(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    side_table: Callable[[str, str], str],
) -> None:
    """Issue 12: ALTER TABLE adds and drops columns under new schema versions that readers
    of the old ones still read (BACKWARD_TRANSITIVE); a type change the registry refuses stops
    capture with an error naming the table, and nothing after it is published."""
    people = side_table("evolving", "id bigint PRIMARY KEY, full_name text, age integer")
    insert = "INSERT INTO {t} VALUES (%s, %s, %s)"
    try:
        with running_capture(settings, registry, "civil", people, [people]):
            wait_caught_up(civil, people)
            civil.execute(q(insert, people), (1, "An", 30))
            civil.execute(q("ALTER TABLE {t} ADD COLUMN nickname text", people))
            civil.execute(
                q("INSERT INTO {t} VALUES (%s, %s, %s, %s)", people), (2, "Bình", 40, "Bi")
            )
            civil.execute(q("ALTER TABLE {t} DROP COLUMN age", people))
            civil.execute(q(insert, people), (3, "Chi", "C"))
            wait_caught_up(civil, people)
        subject = f"civsync.civil.{people}-value"
        assert len(registry.client.get_versions(subject)) == 3
        rows = [e["after"] for e in events_of(settings, registry, "civil", people)]
        assert rows == [
            {"id": 1, "full_name": "An", "age": 30},
            {"id": 2, "full_name": "Bình", "age": 40, "nickname": "Bi"},
            {"id": 3, "full_name": "Chi", "nickname": "C"},
        ]

        civil.execute(q("ALTER TABLE {t} ALTER COLUMN nickname TYPE integer USING NULL", people))
        civil.execute(q(insert, people), (4, "Dũng", 7))

        def stopped() -> bool:
            slot = civil.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (people,)
            ).fetchone()
            return slot is not None and not slot[0]

        def capture_until_it_stops() -> None:
            with running_capture(settings, registry, "civil", people, [people]):
                time.sleep(1)  # capture starts and reaches the change
                wait_for(stopped, "capture stops on the refused schema")

        with pytest.raises(SchemaRefusedError, match=people):
            capture_until_it_stops()
        assert [e["after"]["id"] for e in events_of(settings, registry, "civil", people)][-1] == 3
    finally:
        drop_slot(civil, people)
