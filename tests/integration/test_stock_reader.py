"""Stock readers take civsync's topics as typed columns, against the real services.

Two readers that know nothing of civsync:

- Debezium's JDBC sink in a Kafka Connect worker, reading keys and values with Apicurio's
  Avro converter (Confluent wire format, ids from the registry), writes a captured table into
  a table of the population store that it creates itself (``schema.evolution=basic``); after
  the initial snapshot and again after inserts, updates, a primary-key update and deletes, the
  target equals the source row for row, value for value, in typed columns.
- Apache's own ``avro`` library decodes a record with the writer schema fetched by id over
  the registry's HTTP API: a date is days since the epoch, a numeric(p,s) a Decimal.

The worker is civsync.services.connect's (jars from Maven Central, cached under
``<run>/connect``). A worker that cannot start fails the test; nothing here skips.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import avro.io
import avro.schema
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql

from civsync.config import CivsyncSettings
from civsync.services.connect import ConnectWorker, avro_converters
from connectors.capture.publisher import topic_for
from connectors.kafka.reader import read_to_end
from connectors.postgres import Connection
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import (
    drop_slot,
    events_of,
    q,
    running_capture,
    wait_caught_up,
)
from tests.integration.conftest import RUN_DIR

# Every column type civsync's stores use; the two domains are made like the stores' own.
DOMAINS = (
    "CREATE DOMAIN {partial_date} AS text"
    " CHECK (VALUE ~ '^[0-9]{{4}}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$')",
    "CREATE DOMAIN {place} AS jsonb"
    " CHECK (VALUE IS NULL OR (jsonb_typeof(VALUE) = 'object' AND VALUE ? 'text'))",
)
TABLE = """CREATE TABLE {table} (
    id bigint PRIMARY KEY, full_name text, ethnicity varchar(40), birth_date date,
    fee numeric(12,2), registered_at timestamptz, active boolean, score double precision,
    photo bytea, extra jsonb, birth_year_month {partial_date}, place_of_birth {place}
)"""
COLUMNS = (
    "id, full_name, ethnicity, birth_date, fee, registered_at, active, score, photo, extra,"
    " birth_year_month, place_of_birth"
)
INSERT = "INSERT INTO {t} VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"  # in order
PLACE = {
    "text": "Xã Tân Phú, huyện Đông Hưng, tỉnh Thái Bình",
    "code": "12345",
    "code_list": "2025",
}
PEOPLE = [
    (
        1,
        "Nguyễn Thị Hương",
        "Kinh",
        "1999-03-01",
        "12345678.90",
        "2025-07-01 08:00:00.123456+07",
        True,
        0.1,
        b"\x00\xff\x10",
        json.dumps({"note": "đã đối chiếu", "n": [1, 2.5, None]}),
        "1999-03",
        json.dumps(PLACE),
    ),
    (
        2,
        "Trần Văn Minh",
        "Tày",
        "1950-12-31",
        "-0.05",
        "1969-12-31 23:59:59+00",
        False,
        -1.5e300,
        b"",
        json.dumps({}),
        "1950",
        json.dumps({"text": "Hà Nội"}),
    ),
    (3, "Lò Thị Mai", None, None, None, None, None, None, None, None, None, None),
]
NEWBORN = (
    4,
    "Hà Văn Đức",
    "Mường",
    "2025-02-28",
    "0.00",
    "2025-02-28 23:30:00-05:30",
    True,
    3.0,
    b"\x01",
    json.dumps({"a": {"b": "c"}}),
    "2025-02",
    json.dumps(PLACE),
)
SINK_TYPES = {  # what the sink made of each column from the schemas alone
    "id": "bigint",
    "full_name": "text",
    "ethnicity": "text",
    "birth_date": "date",
    "fee": "numeric(12,2)",
    "registered_at": "timestamp(6) with time zone",
    "active": "boolean",
    "score": "double precision",
    "photo": "bytea",
    "extra": "json",
    "birth_year_month": "text",
    "place_of_birth": "json",
}


@pytest.fixture
def source(civil: Connection, unique_name: str) -> Iterator[str]:
    """A civil-store table of every column type (REPLICA IDENTITY FULL), the first people in
    it before capture starts; dropped afterwards with its domains and capture slot."""
    names = {
        "table": sql.Identifier(unique_name),
        "partial_date": sql.Identifier(f"{unique_name}_pd"),
        "place": sql.Identifier(f"{unique_name}_place"),
    }
    for ddl in (*DOMAINS, TABLE):
        civil.execute(sql.SQL(ddl).format(**names))
    civil.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", unique_name))
    yield unique_name
    civil.execute(q("DROP TABLE {t}", unique_name))
    for domain in ("partial_date", "place"):
        civil.execute(sql.SQL("DROP DOMAIN {}").format(names[domain]))
    drop_slot(civil, unique_name)


@pytest.fixture
def subjects(settings: CivsyncSettings, unique_name: str) -> Iterator[None]:
    """Deletes the registry subjects of the test's topics afterwards (soft, then hard)."""
    yield
    with SchemaRegistry(settings.registry) as registry:
        registry.delete_subjects(s for s in registry.subjects() if unique_name in s)


@pytest.fixture
def target(population: Connection, unique_name: str) -> Iterator[str]:
    """The name of the population-store table the sink creates; dropped afterwards."""
    yield unique_name
    population.execute(q("DROP TABLE IF EXISTS {t}", unique_name))


@pytest.fixture
def connector(settings: CivsyncSettings, unique_name: str) -> Iterator[str]:
    """The sink connector's name; its consumer group (``connect-<name>``) deleted afterwards."""
    name = f"{unique_name}-sink"
    yield name
    admin = AdminClient(settings.kafka.client_config())
    for future in admin.delete_consumer_groups([f"connect-{name}"]).values():
        with contextlib.suppress(KafkaException):  # none if the sink never started
            future.result(timeout=30)


def rows(conn: Connection, table: str) -> list[tuple[Any, ...]]:
    """Every row of ``table`` as typed Python values, by id (columns in COLUMNS order)."""
    query = sql.SQL("SELECT {} FROM {} ORDER BY id").format(sql.SQL(COLUMNS), sql.Identifier(table))
    return conn.execute(query).fetchall()


def column_types(conn: Connection, table: str) -> dict[str, str]:
    """Each column's type as PostgreSQL names it (``numeric(12,2)``), by name."""
    found = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (sql.Identifier(table).as_string(conn),),
    ).fetchall()
    return {str(name): str(pg_type) for name, pg_type in found}


def wait_same(
    worker: ConnectWorker,
    connector: str,
    civil: Connection,
    population: Connection,
    tables: tuple[str, str],
    timeout_s: float = 120.0,
) -> list[tuple[Any, ...]]:
    """Until the sink's table holds exactly what the source table holds; the rows."""
    source, target = tables
    expected = rows(civil, source)
    deadline = time.monotonic() + timeout_s
    found: list[tuple[Any, ...]] = []
    while time.monotonic() < deadline:
        worker.check(connector)  # a failed task raises with its trace
        if column_types(population, target):
            found = rows(population, target)
            if found == expected:
                return found
        time.sleep(0.25)
    raise AssertionError(
        f"the sink's table did not come to equal the source in {timeout_s:.0f}s;\n"
        f"source: {expected}\ntarget: {found}\nworker log: {worker.log}"
    )


def test_the_debezium_jdbc_sink_writes_a_civsync_topic_into_typed_columns(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    population: Connection,
    source: str,
    target: str,
    connector: str,
    subjects: None,
) -> None:
    for person in PEOPLE:
        civil.execute(q(INSERT, source), person)  # before capture: the initial snapshot's (r)
    topic = topic_for("civil", "public", source)
    store = settings.population
    sink = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": f"jdbc:postgresql://{store.host}:{store.port}/{store.dbname}",
        "connection.username": store.user,
        "connection.password": store.password.get_secret_value(),
        "insert.mode": "upsert",
        "primary.key.mode": "record_key",
        "delete.enabled": "true",
        "schema.evolution": "basic",
        "collection.name.format": target,
        "consumer.override.auto.offset.reset": "earliest",
        **avro_converters(settings.registry, RUN_DIR / "connect"),
    }
    worker = ConnectWorker(settings.kafka, source, home=RUN_DIR / "connect")
    with worker, running_capture(settings, registry, "civil", source, [source]):
        wait_caught_up(civil, source)
        worker.create(connector, sink)
        worker.wait_running(connector)
        snapshot = wait_same(worker, connector, civil, population, (source, target))
        assert [row[0] for row in snapshot] == [1, 2, 3]

        civil.execute(q(INSERT, source), NEWBORN)
        civil.execute(
            q(
                "UPDATE {t} SET full_name = %s, fee = fee + 1.01, registered_at = now(),"
                " photo = %s, extra = extra || %s::jsonb, active = NULL WHERE id = 1",
                source,
            ),
            ("Nguyễn Thị Hương Lan", bytes(range(256)), json.dumps({"checked": True})),
        )
        civil.execute(q("UPDATE {t} SET birth_date = '2000-01-01', score = 0 WHERE id = 3", source))
        civil.execute(q("UPDATE {t} SET id = 30 WHERE id = 3", source))  # a d, then a c
        civil.execute(q("DELETE FROM {t} WHERE id = 2", source))
        wait_caught_up(civil, source)
        changed = wait_same(worker, connector, civil, population, (source, target))
        assert [row[0] for row in changed] == [1, 4, 30]
        worker.delete(connector)

    ops = Counter(event["op"] for event in events_of(settings, registry, "civil", source))
    assert ops == {"r": 3, "c": 2, "u": 2, "d": 2}
    made = column_types(population, target)
    assert made == SINK_TYPES
    # compared as PostgreSQL prints them too: numeric's scale, bytea and the instant survive
    as_text = sql.SQL(
        "SELECT fee::text, photo::text, registered_at AT TIME ZONE 'UTC', extra::jsonb::text"
        " FROM {} ORDER BY id"
    )
    expected_text = civil.execute(as_text.format(sql.Identifier(source))).fetchall()
    assert population.execute(as_text.format(sql.Identifier(target))).fetchall() == expected_text


def test_apache_avro_decodes_a_civsync_record_with_the_writer_schema_by_id(
    settings: CivsyncSettings,
    registry: SchemaRegistry,
    civil: Connection,
    source: str,
    subjects: None,
) -> None:
    civil.execute(q(INSERT, source), PEOPLE[0])
    with running_capture(settings, registry, "civil", source, [source]):
        wait_caught_up(civil, source)
    messages = list(read_to_end(settings.kafka, topic_for("civil", "public", source)))
    assert len(messages) == 1

    def decode(payload: bytes | None) -> Any:
        assert payload is not None
        magic, schema_id = struct.unpack(">bI", payload[:5])
        assert magic == 0
        writer = avro.schema.parse(registry.writer_schema(schema_id))
        reader = avro.io.DatumReader(writer)
        return reader.read(avro.io.BinaryDecoder(io.BytesIO(payload[5:])))

    key, value = decode(messages[0].key()), decode(messages[0].value())
    assert key == {"id": 1}
    assert value["op"] == "r"
    after = value["after"]
    epoch_days = (date(1999, 3, 1) - date(1970, 1, 1)).days
    assert after["birth_date"] == epoch_days  # io.debezium.time.Date: days since the epoch
    assert after["fee"] == Decimal("12345678.90")  # logicalType decimal, scale 2
    assert after["fee"].as_tuple().exponent == -2
    moment = datetime(2025, 7, 1, 1, 0, 0, 123456, tzinfo=UTC)
    assert after["registered_at"] == moment.isoformat().replace("+00:00", "Z")
    assert after["active"] is True
    assert after["score"] == 0.1
    assert after["photo"] == b"\x00\xff\x10"
    assert json.loads(after["extra"]) == {"note": "đã đối chiếu", "n": [1, 2.5, None]}
    assert after["birth_year_month"] == "1999-03"
    assert json.loads(after["place_of_birth"]) == PLACE
    assert after["full_name"] == "Nguyễn Thị Hương"
    assert after["ethnicity"] == "Kinh"
    assert value["before"] is None
    assert value["source"]["table"] == source
    assert value["event_id"]
