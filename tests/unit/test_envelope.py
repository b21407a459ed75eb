"""The typed per-table envelope: Debezium's schemas, and published rows surviving a trip through
fastavro (schemaless writer and reader) and back by ``from_avro_row``."""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

import fastavro
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.capture.envelope import (
    Column,
    envelope_schema,
    from_avro_row,
    key_schema,
    to_avro_row,
    value_schema,
)
from engine.events import Value

NS = "civsync.civil.public.person"
EVERY_TYPE = (
    Column("id", "bigint"),
    Column("flag", "boolean"),
    Column("small", "smallint"),
    Column("whole", "integer"),
    Column("object", "oid"),
    Column("ratio", "real"),
    Column("weight", "double precision"),
    Column("amount", "numeric(12,2)"),
    Column("free", "numeric"),
    Column("other_free", "numeric"),
    Column("note", "text"),
    Column("code", "character varying(20)"),
    Column("country", "character(2)"),
    Column("born", "date"),
    Column("seen", "timestamp without time zone"),
    Column("seen_ms", "timestamp(3) without time zone"),
    Column("changed", "timestamp with time zone"),
    Column("opens", "time without time zone"),
    Column("opens_ms", "time(3) without time zone"),
    Column("closes", "time with time zone"),
    Column("ref", "uuid"),
    Column("doc", "json"),
    Column("docb", "jsonb"),
    Column("photo", "bytea"),
    Column("tags", "text[]"),
    Column("scores", "integer[]"),
    Column("span", "interval"),
    Column("mood", "public.mood"),
)
SAMPLE: dict[str, Value] = {
    "id": 42,
    "flag": True,
    "small": -32768,
    "whole": 2_147_483_647,
    "object": 4_294_967_295,
    "ratio": 0.1,
    "weight": 1.0 / 3.0,
    "amount": "12345678.90",
    "free": "12.500",
    "other_free": "-0.001",
    "note": "Nguyễn Văn Ánh",
    "code": "HN-01",
    "country": "VN",
    "born": "1999-03-01",
    "seen": "2025-07-01 08:00:00.123456",
    "seen_ms": "2025-07-01 08:00:00.5",
    "changed": "2025-07-01T01:00:00Z",
    "opens": "08:30:00.25",
    "opens_ms": "24:00:00",
    "closes": "01:00:00Z",
    "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "doc": '{"a": [1, 2]}',
    "docb": '{"a": [1, 2]}',
    "photo": "00ff10",
    "tags": '{a,"b c"}',
    "scores": "{1,2,3}",
    "span": "1 day 02:00:00",
    "mood": "happy",
}
KEY = (Column("id", "bigint"), Column("free", "numeric"))


@cache
def _parsed_value(columns: tuple[Column, ...]) -> Any:
    return fastavro.parse_schema(value_schema(NS, columns))


def _through_avro(schema: Any, record: Mapping[str, Any]) -> Any:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, schema)


def _round_trip(columns: Sequence[Column], row: Mapping[str, Value]) -> dict[str, Value]:
    columns = tuple(columns)
    decoded = _through_avro(_parsed_value(columns), to_avro_row(columns)(row))
    return from_avro_row(value_schema(NS, columns))(decoded)


def _one(pg_type: str, value: Value) -> Value:
    return _round_trip([Column("c", pg_type)], {"c": value})["c"]


def _encoded(pg_type: str, value: Value) -> Any:
    return to_avro_row([Column("c", pg_type)])({"c": value})["c"]


def _field_type(pg_type: str) -> Any:
    return value_schema(NS, [Column("c", pg_type)])["fields"][0]["type"][1]


def _without_zero_fraction(text: str) -> str:
    """PostgreSQL's way: no trailing zeros in the seconds' fraction, no lone point."""
    return text.rstrip("0").rstrip(".") if "." in text else text


# --- schemas --------------------------------------------------------------------------------


def test_every_schema_parses() -> None:
    fastavro.parse_schema(key_schema(NS, KEY))
    fastavro.parse_schema(value_schema(NS, EVERY_TYPE))
    fastavro.parse_schema(envelope_schema(NS, EVERY_TYPE, KEY))
    fastavro.parse_schema(envelope_schema(NS, EVERY_TYPE, ()))


def test_envelope_fields_are_in_debeziums_order_then_civsyncs() -> None:
    envelope = envelope_schema(NS, EVERY_TYPE, KEY)
    names = [field["name"] for field in envelope["fields"]]
    assert names == [
        "before", "after", "source", "op", "ts_ms", "transaction",
        "event_id", "hlc", "unavailable", "previous_key",
    ]  # fmt: skip
    assert envelope["name"] == "Envelope"
    assert envelope["namespace"] == NS
    assert envelope["connect.name"] == f"{NS}.Envelope"


def test_source_block_is_debeziums_postgresql_source_then_civsyncs() -> None:
    fields = {field["name"]: field for field in envelope_schema(NS, EVERY_TYPE, KEY)["fields"]}
    source = fields["source"]["type"]
    assert (source["name"], source["namespace"]) == ("Source", "io.debezium.connector.postgresql")
    assert [field["name"] for field in source["fields"]] == [
        "version", "connector", "name", "ts_ms", "snapshot", "db", "sequence",
        "schema", "table", "txId", "lsn", "xmin", "store", "commit_lsn",
    ]  # fmt: skip
    snapshot = source["fields"][4]
    assert snapshot["default"] == "false"
    assert snapshot["type"][0]["connect.name"] == "io.debezium.data.Enum"
    assert snapshot["type"][0]["connect.parameters"] == {"allowed": "true,last,false,incremental"}
    transaction = fields["transaction"]["type"][1]
    assert (transaction["name"], transaction["namespace"]) == ("block", "event")
    assert transaction["connect.name"] == "event.block"


def test_value_is_defined_in_before_and_key_in_previous_key() -> None:
    fields = {field["name"]: field for field in envelope_schema(NS, EVERY_TYPE, KEY)["fields"]}
    assert fields["before"]["type"][1]["name"] == "Value"
    assert fields["after"]["type"] == ["null", "Value"]
    old_key = fields["previous_key"]["type"][1]
    assert old_key["name"] == "Key"
    # the variable-scale decimal is defined once, in Value, and referenced after that
    assert old_key["fields"][1]["type"] == "io.debezium.data.VariableScaleDecimal"
    assert all(field["default"] is None for name, field in fields.items() if name != "source"
               and name not in {"op", "event_id", "unavailable"})  # fmt: skip


def test_key_fields_are_required_and_value_fields_optional() -> None:
    key = key_schema(NS, KEY)
    assert (key["name"], key["connect.name"]) == ("Key", f"{NS}.Key")
    assert key["fields"][0] == {"name": "id", "type": "long"}
    assert key["fields"][1]["type"]["name"] == "VariableScaleDecimal"  # defined here, standalone
    value = value_schema(NS, KEY)
    assert value["fields"][0] == {"name": "id", "type": ["null", "long"], "default": None}


def _connect(avro_type: str, name: str) -> dict[str, Any]:
    return {"type": avro_type, "connect.version": 1, "connect.name": name}


@pytest.mark.parametrize(
    ("pg_type", "avro_type"),
    [
        ("boolean", "boolean"),
        ("smallint", {"type": "int", "connect.type": "int16"}),
        ("integer", "int"),
        ("bigint", "long"),
        ("oid", "long"),
        ("real", "float"),
        ("double precision", "double"),
        ("text", "string"),
        ("character varying(20)", "string"),
        ("character(2)", "string"),
        ("date", _connect("int", "io.debezium.time.Date")),
        ("timestamp(0) without time zone", _connect("long", "io.debezium.time.Timestamp")),
        ("timestamp(3) without time zone", _connect("long", "io.debezium.time.Timestamp")),
        ("timestamp(4) without time zone", _connect("long", "io.debezium.time.MicroTimestamp")),
        ("timestamp without time zone", _connect("long", "io.debezium.time.MicroTimestamp")),
        ("timestamp with time zone", _connect("string", "io.debezium.time.ZonedTimestamp")),
        ("timestamp(3) with time zone", _connect("string", "io.debezium.time.ZonedTimestamp")),
        ("time(3) without time zone", _connect("int", "io.debezium.time.Time")),
        ("time without time zone", _connect("long", "io.debezium.time.MicroTime")),
        ("time with time zone", _connect("string", "io.debezium.time.ZonedTime")),
        ("uuid", _connect("string", "io.debezium.data.Uuid")),
        ("json", _connect("string", "io.debezium.data.Json")),
        ("jsonb", _connect("string", "io.debezium.data.Json")),
        ("bytea", "bytes"),
        ("text[]", "string"),
        ("numeric(12,2)[]", "string"),
        ("interval", "string"),
        ("public.mood", "string"),
    ],
)
def test_debezium_type_of_each_column_type(pg_type: str, avro_type: Any) -> None:
    assert _field_type(pg_type) == avro_type


def test_fixed_numeric_is_connects_decimal() -> None:
    assert _field_type("numeric(12,2)") == {
        "type": "bytes",
        "scale": 2,
        "precision": 12,
        "connect.version": 1,
        "connect.parameters": {"scale": "2", "connect.decimal.precision": "12"},
        "connect.name": "org.apache.kafka.connect.data.Decimal",
        "logicalType": "decimal",
    }
    assert _field_type("numeric(10,0)")["scale"] == 0


def test_unconstrained_numeric_is_variable_scale_decimal() -> None:
    assert _field_type("numeric") == {
        "type": "record",
        "name": "VariableScaleDecimal",
        "namespace": "io.debezium.data",
        "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
        "connect.doc": "Variable scaled decimal",
        "connect.version": 1,
        "connect.name": "io.debezium.data.VariableScaleDecimal",
    }


def test_schemas_are_fresh_copies() -> None:
    first = value_schema(NS, [Column("n", "numeric")])
    first["fields"][0]["type"][1]["name"] = "Changed"
    assert _field_type("numeric")["name"] == "VariableScaleDecimal"


def test_invalid_avro_field_name_is_refused() -> None:
    with pytest.raises(ValueError, match="'full name'"):
        value_schema(NS, [Column("full name", "text")])


# --- Debezium's representation, pinned ------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_type", "published", "avro"),
    [
        ("date", "1999-03-01", 10651),
        ("date", "1970-01-01", 0),
        ("date", "1969-12-31", -1),
        ("numeric(12,2)", "12345678.90", Decimal("12345678.90")),
        ("numeric(12,2)", "-0.5", Decimal("-0.50")),
        ("numeric", "12.500", {"scale": 3, "value": b"\x30\xd4"}),
        ("numeric", "-1", {"scale": 0, "value": b"\xff"}),
        ("numeric", "128", {"scale": 0, "value": b"\x00\x80"}),
        ("numeric", "0", {"scale": 0, "value": b"\x00"}),
        ("timestamp with time zone", "2025-07-01 08:00:00+07", "2025-07-01T01:00:00Z"),
        ("timestamp with time zone", "2025-07-01 01:00:00+00", "2025-07-01T01:00:00Z"),
        ("timestamp with time zone", "2025-07-01 08:00:00.5+07", "2025-07-01T01:00:00.5Z"),
        ("timestamp with time zone", "2025-07-01 08:00:00+05:30", "2025-07-01T02:30:00Z"),
        ("timestamp with time zone", "2025-07-01 02:00:00-03", "2025-07-01T05:00:00Z"),
        ("timestamp with time zone", "2025-07-01 00:00:00.123+07", "2025-06-30T17:00:00.123Z"),
        ("timestamp with time zone", "2025-07-01T01:00:00Z", "2025-07-01T01:00:00Z"),
        ("timestamp with time zone", "infinity", "infinity"),
        ("timestamp without time zone", "2025-07-01 01:00:00.5", 1_751_331_600_500_000),
        ("timestamp without time zone", "1969-12-31 23:59:59.999999", -1),
        ("timestamp(3) without time zone", "2025-07-01 01:00:00.5", 1_751_331_600_500),
        ("time without time zone", "01:00:00.000001", 3_600_000_001),
        ("time without time zone", "24:00:00", 86_400_000_000),
        ("time(3) without time zone", "00:00:01.5", 1500),
        ("time with time zone", "08:00:00+07", "01:00:00Z"),
        ("time with time zone", "02:00:00.25+05:30", "20:30:00.25Z"),
        ("time with time zone", "23:00:00-02", "01:00:00Z"),
        ("time with time zone", "24:00:00+00", "24:00:00Z"),
        ("bytea", "00ff10", b"\x00\xff\x10"),
        ("smallint", -5, -5),
        ("oid", 4_294_967_295, 4_294_967_295),
        ("text[]", '{a,"b c"}', '{a,"b c"}'),
    ],
)
def test_debezium_representation(pg_type: str, published: Value, avro: Any) -> None:
    encoded = _encoded(pg_type, published)
    assert encoded == avro
    assert type(encoded) is type(avro)


def test_fixed_decimal_keeps_the_declared_scale() -> None:
    assert _encoded("numeric(12,2)", "-0.5").as_tuple().exponent == -2
    assert _one("numeric(12,2)", "7") == "7.00"


def test_zoned_forms_reach_a_fixed_point_after_one_pass() -> None:
    once = _one("timestamp with time zone", "2025-07-01 08:00:00.5+07")
    assert once == "2025-07-01T01:00:00.5Z"
    assert _one("timestamp with time zone", once) == once
    assert _one("time with time zone", _one("time with time zone", "08:00:00+07")) == "01:00:00Z"


def test_real_comes_back_as_postgresql_prints_it() -> None:
    assert _one("real", 0.1) == 0.1
    assert _one("real", 3.14159) == 3.14159
    assert _one("real", float("inf")) == float("inf")


# --- round trips ------------------------------------------------------------------------------


def test_every_type_round_trips() -> None:
    assert _round_trip(EVERY_TYPE, SAMPLE) == SAMPLE


def test_from_avro_row_accepts_the_parsed_schema() -> None:
    decoded = _through_avro(_parsed_value(EVERY_TYPE), to_avro_row(EVERY_TYPE)(SAMPLE))
    assert from_avro_row(_parsed_value(EVERY_TYPE))(decoded) == SAMPLE


def test_from_avro_row_reads_a_key() -> None:
    key = fastavro.parse_schema(key_schema(NS, KEY))
    published: dict[str, Value] = {"id": 7, "free": "3.25"}
    decoded = _through_avro(key, to_avro_row(KEY)(published))
    assert from_avro_row(key_schema(NS, KEY))(decoded) == published


INT_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "oid": (0, 2**32 - 1),
}


@given(st.sampled_from(sorted(INT_RANGES)), st.data())
def test_integers_round_trip(pg_type: str, data: st.DataObject) -> None:
    low, high = INT_RANGES[pg_type]
    number = data.draw(st.integers(min_value=low, max_value=high))
    assert _one(pg_type, number) == number


@given(st.sampled_from(sorted(INT_RANGES)), st.booleans(), st.integers(1, 2**70))
def test_integers_outside_the_type_are_refused(pg_type: str, above: bool, by: int) -> None:
    low, high = INT_RANGES[pg_type]
    with pytest.raises(ValueError, match=f"column 'c' \\({pg_type}\\)"):
        _encoded(pg_type, high + by if above else low - by)


def _decimal_text(unscaled: int, scale: int) -> str:
    """Plain decimal text as PostgreSQL prints numeric, built from digits alone."""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    text = f"{digits[:-scale]}.{digits[-scale:]}" if scale else digits
    return f"-{text}" if unscaled < 0 else text


@given(st.data())
def test_decimals_of_the_declared_scale_round_trip(data: st.DataObject) -> None:
    precision = data.draw(st.integers(1, 60), label="precision")
    scale = data.draw(st.integers(0, precision), label="scale")
    unscaled = data.draw(st.integers(-(10**precision) + 1, 10**precision - 1), label="unscaled")
    text = _decimal_text(unscaled, scale)
    pg_type = f"numeric({precision},{scale})"
    assert _encoded(pg_type, text) == Decimal(text)
    assert _one(pg_type, text) == text


@given(st.integers(-(10**80), 10**80), st.integers(0, 40))
def test_variable_scale_decimals_round_trip(unscaled: int, scale: int) -> None:
    text = _decimal_text(unscaled, scale)
    encoded = _encoded("numeric", text)
    assert encoded["scale"] == scale
    assert int.from_bytes(encoded["value"], "big", signed=True) == unscaled
    assert _one("numeric", text) == text


@given(st.dates())
def test_dates_round_trip(day: date) -> None:
    assert _encoded("date", day.isoformat()) == (day - date(1970, 1, 1)).days
    assert _one("date", day.isoformat()) == day.isoformat()


@given(st.datetimes())
def test_timestamps_round_trip(moment: datetime) -> None:
    text = _without_zero_fraction(moment.isoformat(sep=" "))
    assert _encoded("timestamp without time zone", text) == (
        moment - datetime(1970, 1, 1)
    ) // timedelta(microseconds=1)
    assert _one("timestamp without time zone", text) == text


@given(
    st.datetimes().map(lambda moment: moment.replace(microsecond=moment.microsecond // 1000 * 1000))
)
def test_millisecond_timestamps_round_trip(moment: datetime) -> None:
    text = _without_zero_fraction(moment.isoformat(sep=" "))
    assert _one("timestamp(3) without time zone", text) == text


def _pg_offset(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{hours:02d}" + (f":{minutes:02d}" if minutes else "")


OFFSETS = st.integers(-15 * 60, 15 * 60).map(lambda minutes: timezone(timedelta(minutes=minutes)))


@given(st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=OFFSETS))
def test_zoned_timestamps_keep_the_instant_in_utc(moment: datetime) -> None:
    offset = moment.utcoffset()
    assert offset is not None
    published = _without_zero_fraction(moment.replace(tzinfo=None).isoformat(sep=" ")) + _pg_offset(
        offset
    )
    iso = _one("timestamp with time zone", published)
    assert isinstance(iso, str)
    assert iso.endswith("Z")
    assert "." not in iso or not iso.removesuffix("Z").endswith("0")
    assert datetime.fromisoformat(iso) == moment
    assert _one("timestamp with time zone", iso) == iso


@given(st.times())
def test_times_round_trip(clock: time) -> None:
    text = _without_zero_fraction(clock.isoformat())
    assert _one("time without time zone", text) == text


@given(st.text().map(lambda text: unicodedata.normalize("NFC", text)))
def test_unicode_text_round_trips(text: str) -> None:
    assert _one("text", text) == text
    assert _one("character varying(20)", text) == text


@given(st.binary())
def test_bytea_round_trips(data: bytes) -> None:
    assert _encoded("bytea", data.hex()) == data
    assert _one("bytea", data.hex()) == data.hex()


@given(st.floats(allow_nan=False))
def test_doubles_round_trip(number: float) -> None:
    assert _one("double precision", number) == number


@given(st.integers(-999_999, 999_999), st.integers(-30, 30))
def test_reals_of_six_significant_digits_round_trip(mantissa: int, exponent: int) -> None:
    number = float(f"{mantissa}e{exponent}")
    assert _one("real", number) == number


SAMPLE_OR_NULL = {
    column.name: st.sampled_from([SAMPLE[column.name], None]) for column in EVERY_TYPE
}


@given(st.fixed_dictionaries({}, optional=SAMPLE_OR_NULL))
def test_nulls_and_absent_columns(row: dict[str, Value]) -> None:
    encoded = to_avro_row(EVERY_TYPE)(row)
    assert set(encoded) == set(row)  # absent stays absent: the writer fills in null
    assert all(encoded[name] is None for name, value in row.items() if value is None)
    assert _round_trip(EVERY_TYPE, row) == {
        column.name: row.get(column.name) for column in EVERY_TYPE
    }


# --- the envelope -----------------------------------------------------------------------------


def _source() -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "connector": "civsync",
        "name": "civsync.civil",
        "ts_ms": 1_751_331_600_000,
        "snapshot": "false",
        "db": "civil",
        "sequence": None,
        "schema": "public",
        "table": "person",
        "txId": 751,
        "lsn": 0x1A07310,
        "xmin": None,
        "store": "civil",
        "commit_lsn": 0x1A07368,
    }


def test_envelope_carries_a_full_create() -> None:
    schema = envelope_schema(NS, EVERY_TYPE, KEY)
    # 0.5 is exact in float32, so the typed record read back compares equal
    sample: dict[str, Value] = {**SAMPLE, "ratio": 0.5}
    record: dict[str, Any] = {
        "before": None,
        "after": to_avro_row(EVERY_TYPE)(sample),
        "source": _source(),
        "op": "c",
        "ts_ms": 1_751_331_600_123,
        "transaction": None,
        "event_id": "civil:0000000001A07368:3",
        "hlc": {"wall_ms": 1_751_331_600_000, "logical": 2, "node": "capture-1"},
        "unavailable": [],
        "previous_key": None,
    }
    decoded = _through_avro(fastavro.parse_schema(schema), record)
    assert decoded == record
    assert from_avro_row(schema["fields"][0]["type"][1])(decoded["after"]) == sample


def test_envelope_carries_the_old_key_of_a_key_update() -> None:
    schema = fastavro.parse_schema(envelope_schema(NS, EVERY_TYPE, KEY))
    old_key = to_avro_row(KEY)({"id": 41, "free": "12.500"})
    record: dict[str, Any] = {
        "after": to_avro_row(EVERY_TYPE)({"id": 42}),
        "source": _source(),
        "op": "c",
        "previous_key": old_key,
        "transaction": {"id": "751:27402000", "total_order": 3, "data_collection_order": 1},
    }
    decoded = _through_avro(schema, record)
    assert decoded["previous_key"] == old_key
    assert decoded["transaction"]["total_order"] == 3
    assert (decoded["event_id"], decoded["unavailable"], decoded["hlc"]) == ("", [], None)
    assert decoded["after"]["id"] == 42
    assert decoded["after"]["note"] is None


# --- conversion errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pg_type", "value", "reason"),
    [
        ("numeric(12,2)", "NaN", "no Avro decimal form"),
        ("numeric", "Infinity", "no Avro decimal form"),
        ("numeric", "-Infinity", "no Avro decimal form"),
        ("numeric", "twelve", "not a number"),
        ("numeric(12,2)", "1.005", "more than 2 fractional digits"),
        ("numeric(4,2)", "123.45", "more than 4 digits"),
        ("numeric(12,2)", 12, "text form"),
        ("integer", True, "expected an integer"),
        ("integer", "12", "expected an integer"),
        ("boolean", "t", "expected a boolean"),
        ("real", 1e39, "outside float32.s range"),
        ("double precision", "1.5", "expected a number"),
        ("date", "1999-02-30", "day is out of range"),
        ("date", "infinity", "Invalid isoformat"),
        ("timestamp without time zone", "2025-07-01 08:00:00+07", "has a time zone offset"),
        ("timestamp(3) without time zone", "2025-07-01 08:00:00.0005", "finer than"),
        ("timestamp with time zone", "2025-07-01 08:00:00", "no time zone offset"),
        ("timestamp with time zone", "0001-01-01 00:00:00+07", "out of range"),
        ("time without time zone", "24:00:01", "not a time of day"),
        ("time without time zone", "12:60:00", "not a time of day"),
        ("time(3) without time zone", "00:00:00.0001", "finer than"),
        ("time with time zone", "08:00:00", "not a time with time zone"),
        ("bytea", "abc", "non-hexadecimal|odd"),
        ("text", 5, "text form"),
    ],
)
def test_conversion_errors_name_the_column(pg_type: str, value: Value, reason: str) -> None:
    columns = [Column("id", "bigint"), Column("bad_col", pg_type)]
    with pytest.raises(ValueError, match=f"column 'bad_col'.*({reason})"):
        to_avro_row(columns)({"id": 1, "bad_col": value})


def test_a_column_the_table_does_not_have_is_refused() -> None:
    with pytest.raises(ValueError, match="column 'extra' is not in the table's schema"):
        to_avro_row(KEY)({"id": 1, "extra": "x"})


def test_decoding_a_type_without_a_published_form_names_the_column() -> None:
    schema = {
        "type": "record",
        "name": "Value",
        "fields": [{"name": "at", "type": ["null", _connect("long", "io.debezium.time.NanoTime")]}],
    }
    with pytest.raises(ValueError, match="column 'at'"):
        from_avro_row(schema)


def test_decoding_a_value_out_of_range_names_the_column() -> None:
    decode = from_avro_row(value_schema(NS, [Column("born", "date")]))
    with pytest.raises(ValueError, match="column 'born'"):
        decode({"born": -800_000})
