"""The compiled Avro encoder writes fastavro's bytes: for every schema civsync generates (any
table's envelope and key over every column type of avro_types), for hand-written schemas
with the constructs civsync does not use yet, and, through its fallback, for the values
fastavro writes loosely or refuses (then with fastavro's exception)."""

from __future__ import annotations

import enum
import io
import json
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.capture.envelope import Column, envelope_schema, key_schema, to_avro_row
from connectors.kafka.avro_encoder import compile_encoder, compile_fast_path
from engine.events import Value

NS = "civsync.civil.public.person"
LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text() | st.integers(8180, 8200).map(lambda n: "ễ" * (n // 3) + "𝄞" * (n % 7))
_PROFILE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- the two encoders under comparison ------------------------------------------------------


@lru_cache(maxsize=64)
def _parsed(schema_json: str) -> Any:
    return fastavro.parse_schema(json.loads(schema_json))


def _fastavro(schema: Any, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, _parsed(json.dumps(schema)), record)
    return out.getvalue()


@lru_cache(maxsize=64)
def _compiled(schema_json: str) -> tuple[Callable[[Any], bytes], Callable[[Any], bytes]]:
    fast, full = compile_fast_path(schema_json), compile_encoder(schema_json)
    assert fast is not None
    assert full is not None
    return fast, full


def _outcome(encode: Callable[[Any], bytes], record: Any) -> bytes | type[BaseException]:
    try:
        return encode(record)
    except Exception as error:  # the class is the outcome compared
        return type(error)


def _fastavro_takes(schema: Any, record: Any) -> bool:
    return isinstance(_outcome(lambda r: _fastavro(schema, r), record), bytes)


def assert_fast_path_writes_fastavros_bytes(schema: Any, record: Any) -> None:
    """The compiled code takes ``record`` itself (no fallback) and writes fastavro's bytes."""
    fast, full = _compiled(json.dumps(schema))
    expected = _fastavro(schema, record)
    assert fast(record) == expected
    assert full(record) == expected


def assert_same_outcome(schema: Any, record: Any) -> None:
    """The encoder gives fastavro's bytes or fastavro's exception; its compiled code, when
    it takes the record, gives the same bytes."""
    fast, full = _compiled(json.dumps(schema))
    expected = _outcome(lambda r: _fastavro(schema, r), record)
    assert _outcome(full, record) == expected
    written = _outcome(fast, record)
    assert written == expected or not isinstance(written, bytes)


# --- published rows over every type of avro_types' table -------------------------------------

FIXED_TYPES = (
    "boolean", "smallint", "integer", "bigint", "oid", "real", "double precision", "text",
    "character varying(20)", "character(2)", "date", "timestamp with time zone",
    "time with time zone", "uuid", "json", "jsonb", "bytea", "numeric", "text[]",
    "integer[]", "interval", "public.mood",
    *(f"timestamp({p}) without time zone" for p in range(7)), "timestamp without time zone",
    *(f"time({p}) without time zone" for p in range(7)), "time without time zone",
)  # fmt: skip
PG_TYPES = st.sampled_from([*FIXED_TYPES, "numeric(p,s)"]).flatmap(
    lambda pg_type: (
        st.just(pg_type)
        if pg_type != "numeric(p,s)"
        else st.integers(1, 40).flatmap(
            lambda p: st.integers(0, p).map(lambda s: f"numeric({p},{s})")
        )
    )
)
_RANGES = {
    "smallint": (-(2**15), 2**15 - 1),
    "integer": (-(2**31), 2**31 - 1),
    "bigint": (-(2**63), 2**63 - 1),
    "oid": (0, 2**32 - 1),
}
_ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=7)), timezone(-timedelta(hours=3, minutes=30))]
)
_OFFSETS = st.sampled_from(["Z", "+00", "+07", "-03:30", "+05:45"])


def _decimal_text(unscaled: int, scale: int) -> str:
    """Plain decimal text, as PostgreSQL prints numeric, from digits alone (a Decimal would
    round to its context's 28 digits)."""
    digits = str(abs(unscaled)).rjust(scale + 1, "0")
    text = f"{digits[:-scale]}.{digits[-scale:]}" if scale else digits
    return f"-{text}" if unscaled < 0 else text


def _millis(moment: Any) -> Any:
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


_BY_TYPE: dict[str, st.SearchStrategy[Value]] = {
    "boolean": st.booleans(),
    "real": st.floats(width=32) | st.integers(-(2**24), 2**24),
    "double precision": st.floats() | st.integers(-(2**53), 2**53),
    "numeric": st.builds(_decimal_text, st.integers(-(10**40), 10**40), st.integers(0, 30)),
    "date": st.dates().map(date.isoformat),
    "timestamp with time zone": st.datetimes(
        datetime(1900, 1, 1), datetime(2200, 1, 1), timezones=_ZONES
    ).map(lambda moment: moment.isoformat(sep=" ")),
    "time with time zone": st.builds(lambda t, z: t.isoformat() + z, st.times(), _OFFSETS),
    "uuid": st.uuids().map(str),
    "bytea": (st.binary() | st.binary(min_size=8190, max_size=8200)).map(bytes.hex),
}


def published(pg_type: str) -> st.SearchStrategy[Value]:
    """Values of ``pg_type`` in civsync's published form, over the type's whole range."""
    if pg_type in _BY_TYPE:
        return _BY_TYPE[pg_type]
    if pg_type in _RANGES:
        return st.integers(*_RANGES[pg_type])
    if pg_type.startswith("numeric("):
        precision, scale = (int(n) for n in pg_type[8:-1].split(","))
        unscaled = st.integers(-(10**precision) + 1, 10**precision - 1)
        return unscaled.map(lambda n: _decimal_text(n, scale))
    millis = any(f"({p})" in pg_type for p in range(4))  # timestamp(p), time(p), p <= 3
    if pg_type.startswith("timestamp") and "without" in pg_type:
        moments = st.datetimes().map(_millis) if millis else st.datetimes()
        return moments.map(lambda moment: moment.isoformat(sep=" "))
    if pg_type.startswith("time") and "without" in pg_type:
        return (st.times().map(_millis) if millis else st.times()).map(time.isoformat)
    return TEXT  # text, arrays, and every type civsync publishes as its text form


@st.composite
def tables(draw: st.DrawFn) -> list[Column]:
    names = draw(
        st.lists(
            st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True), unique=True, max_size=30
        )
    )
    return [Column(name, draw(PG_TYPES)) for name in names]


@st.composite
def rows(draw: st.DrawFn, columns: Sequence[Column], *, required: bool) -> dict[str, Value]:
    """A published row: each column a value, or (unless ``required``) null or absent."""
    row: dict[str, Value] = {}
    for column in columns:
        kind = "value" if required else draw(st.sampled_from(["value"] * 4 + ["null", "absent"]))
        if kind == "null":
            row[column.name] = None
        elif kind == "value":
            row[column.name] = draw(published(column.type))
    return row


def _without(draw: st.DrawFn, record: dict[str, Any], optional: Sequence[str]) -> dict[str, Any]:
    """``record`` without some of its fields that have a default."""
    dropped = draw(st.sets(st.sampled_from(optional))) if optional else set()
    return {name: value for name, value in record.items() if name not in dropped}


@st.composite
def change_events(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any], Any, Any]:
    """A table's envelope and key schemas, and an envelope and a key record of it as the
    publisher builds them (rows typed by to_avro_row), some fields left to their default."""
    columns = draw(tables())
    key = columns[: draw(st.integers(0, min(2, len(columns))))]
    value_row, key_row = to_avro_row(columns), to_avro_row(key)
    rows_of = st.none() | rows(columns, required=False).map(value_row)
    optional_long = st.none() | LONG
    source = {
        "version": draw(TEXT), "connector": "postgresql", "name": draw(TEXT),
        "ts_ms": draw(LONG), "snapshot": draw(st.sampled_from(["false", "incremental", None])),
        "db": draw(TEXT), "sequence": draw(st.none() | TEXT), "schema": "public",
        "table": draw(TEXT), "txId": draw(optional_long), "lsn": draw(optional_long),
        "xmin": draw(optional_long), "store": draw(TEXT), "commit_lsn": draw(optional_long),
    }  # fmt: skip
    block = st.fixed_dictionaries({"id": TEXT, "total_order": LONG, "data_collection_order": LONG})
    hlc = st.fixed_dictionaries({"wall_ms": LONG, "logical": INT, "node": TEXT})
    event = {
        "before": draw(rows_of),
        "after": draw(rows_of),
        "source": _without(
            draw, source, ["snapshot", "sequence", "txId", "lsn", "xmin", "store", "commit_lsn"]
        ),
        "op": draw(st.sampled_from("crud")),
        "ts_ms": draw(optional_long),
        "transaction": draw(st.none() | block),
        "event_id": draw(TEXT),
        "hlc": draw(st.none() | hlc),
        "unavailable": draw(
            st.lists(st.sampled_from([c.name for c in columns]) | TEXT)
            if columns
            else st.lists(TEXT)
        ),
        "previous_key": draw(st.none() | rows(key, required=True).map(key_row)),
    }
    event = _without(draw, event, [name for name in event if name not in ("source", "op")])
    key_record = key_row(draw(rows(key, required=True)))
    return envelope_schema(NS, columns, key), key_schema(NS, key), event, key_record


@_PROFILE
@given(change_events())
def test_civsync_envelopes_and_keys_are_fastavros_bytes(
    case: tuple[dict[str, Any], dict[str, Any], Any, Any],
) -> None:
    envelope, key, event, key_record = case
    assert_fast_path_writes_fastavros_bytes(envelope, event)
    assert_fast_path_writes_fastavros_bytes(key, key_record)


@_PROFILE
@given(tables().flatmap(lambda columns: st.tuples(st.just(columns), st.data())))
def test_civsync_rows_of_every_type_are_fastavros_bytes(
    case: tuple[list[Column], st.DataObject],
) -> None:
    columns, data = case
    envelope = envelope_schema(NS, columns, columns[:1])
    value = envelope["fields"][0]["type"][1]  # ["null", Value]: Value's definition
    row = to_avro_row(columns)(data.draw(rows(columns, required=False)))
    assert_fast_path_writes_fastavros_bytes(value, row)
    assert_fast_path_writes_fastavros_bytes(["null", value], row)
    assert_fast_path_writes_fastavros_bytes(["null", value], None)


def test_the_person_envelope_is_fastavros_bytes() -> None:
    columns = [
        Column("id", "bigint"), Column("pin", "text"), Column("full_name", "text"),
        Column("birth_date", "date"), Column("income", "numeric(12,2)"),
        Column("place_of_birth", "jsonb"), Column("free", "numeric"),
        Column("updated_at", "timestamp with time zone"), Column("photo", "bytea"),
    ]  # fmt: skip
    row = to_avro_row(columns)(
        {
            "id": 2**63 - 1, "pin": "001080000123", "full_name": "Nguyễn Văn Hùng 𝄞",
            "birth_date": "1980-01-02", "income": "-1.28", "place_of_birth": '{"text": ""}',
            "free": "-0.001", "updated_at": "2026-11-23 17:00:00+07", "photo": "00ff" * 5000,
        }
    )  # fmt: skip
    source = {
        "version": "civsync", "connector": "postgresql", "name": "civsync", "ts_ms": 1,
        "db": "civil", "schema": "public", "table": "person", "lsn": -(2**63),
    }  # fmt: skip
    event = {
        "before": None,
        "after": row,
        "source": source,
        "op": "c",
        "unavailable": ["pin", ""],
        "previous_key": {"id": -1},
    }
    assert_fast_path_writes_fastavros_bytes(envelope_schema(NS, columns, columns[:1]), event)


# --- hand-written schemas -----------------------------------------------------------------------

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | LONG
    | st.floats()
    | TEXT
    | st.binary()
)
UNIONS = [
    ["string", "null", "boolean", "long", "double"],
    ["null", "boolean", "int", "long", "float", "double", "string", "bytes"],
    ["double", "long", "null"],
    ["float", "long", "double"],
    ["float", "string"],
    ["int", "long", "null"],
    ["long", "boolean"],
    ["boolean", "int"],
    ["bytes", "string"],
    ["null", "double"],
    ["float", "null"],
    ["int", "null"],
    ["null", "long"],
    ["boolean", "null"],
    ["bytes", "null"],
    ["null", {"type": "enum", "name": "Suit", "symbols": ["hearts", "spades"]}, "string"],
    [{"type": "enum", "name": "Suit", "symbols": ["hearts", "spades"]}, "string", "null"],
    ["null", {"type": "fixed", "name": "Four", "size": 4}, "bytes"],
    [{"type": "fixed", "name": "Four", "size": 4}, "string", "double"],
]


@pytest.mark.parametrize("union", UNIONS, ids=json.dumps)
@given(value=SCALARS)
@settings(max_examples=200, deadline=None)
def test_union_branches_are_fastavros_choice(union: list[Any], value: Any) -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": union}]}
    assert_same_outcome(schema, {"x": value})
    if _fastavro_takes(schema, {"x": value}):
        assert_fast_path_writes_fastavros_bytes(schema, {"x": value})  # no fallback needed


def test_union_choices_fastavro_makes() -> None:
    """A few of the choices pinned: first valid branch; bool is never a number; an int is a
    double; a float yields to a later double."""
    cases = [
        (["string", "null", "boolean", "long", "double"], True, b"\x04\x01"),
        (["string", "null", "boolean", "long", "double"], 1, b"\x06\x02"),
        (["string", "null", "boolean", "long", "double"], 2**63, b"\x08" + b"\x00" * 6 + b"\xe0C"),
        (["double", "long"], 1, b"\x00" + b"\x00" * 6 + b"\xf0?"),
        (["float", "long", "double"], 1.0, b"\x04" + b"\x00" * 6 + b"\xf0?"),
        (["long", "boolean"], True, b"\x02\x01"),
        (["null", "string"], None, b"\x00"),
        (["null", "string"], "", b"\x02\x00"),
    ]
    for union, value, expected in cases:
        encode = compile_fast_path(union)
        assert encode is not None
        assert encode(value) == expected == _fastavro(union, value)


RECORDS_UNION = [
    {
        "type": "record",
        "name": "A",
        "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": ["null", "long"]}],
    },
    {
        "type": "record",
        "name": "B",
        "fields": [
            {"name": "a", "type": "long"},
            {"name": "c", "type": "long", "default": 7},
            {"name": "d", "type": ["null", "string"], "default": None},
        ],
    },
    "null",
    {"type": "map", "values": "long"},
]


@given(
    st.dictionaries(st.sampled_from("abcd"), st.none() | st.integers(-5, 5) | st.text(max_size=3))
    | st.none()
)
@settings(max_examples=300, deadline=None)
def test_record_branches_are_fastavros_choice(value: Any) -> None:
    """Of several record branches the valid one sharing most fields; a later valid map wins."""
    for union in (RECORDS_UNION, RECORDS_UNION[:3], [RECORDS_UNION[1], RECORDS_UNION[0]]):
        assert_same_outcome(union, value)
        if _fastavro_takes(union, value):
            assert_fast_path_writes_fastavros_bytes(union, value)


NESTED = {
    "type": "record",
    "name": "Outer",
    "namespace": "ns",
    "fields": [
        {
            "name": "inner",
            "type": {
                "type": "record",
                "name": "Inner",
                "fields": [
                    {"name": "n", "type": "int"},
                    {"name": "s", "type": ["null", "string"], "default": None},
                    {"name": "w", "type": "double", "default": 1.5},
                    {"name": "f", "type": "float", "default": 2},
                ],
            },
        },
        {"name": "by_short_name", "type": ["null", "Inner"]},
        {"name": "by_full_name", "type": "ns.Inner"},
        {"name": "list", "type": {"type": "array", "items": "Inner"}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "table", "type": {"type": "map", "values": ["null", "Inner", "string"]}},
        {
            "name": "color",
            "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]},
        },
        {"name": "colors", "type": {"type": "array", "items": "Color"}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {
            "name": "elsewhere",
            "type": {
                "type": "record",
                "name": "Other",
                "namespace": "other",
                "fields": [{"name": "inner", "type": ["null", "ns.Inner"], "default": None}],
            },
        },
        {"name": "again", "type": "other.Other"},
        {"name": "flag", "type": "boolean"},
        {"name": "blob", "type": "bytes"},
        {"name": "real", "type": "float"},
        {"name": "many", "type": {"type": "map", "values": {"type": "array", "items": "string"}}},
    ],
}
_INNER = st.fixed_dictionaries(
    {"n": INT},
    optional={
        "s": st.none() | TEXT,
        "w": st.floats() | st.integers(-(2**53), 2**53),
        "f": st.floats(width=32),
    },
)
_OTHER = st.fixed_dictionaries({}, optional={"inner": st.none() | _INNER})
NESTED_VALUES = st.fixed_dictionaries(
    {
        "inner": _INNER,
        "by_short_name": st.none() | _INNER,
        "by_full_name": _INNER,
        "list": st.lists(_INNER, max_size=3),
        "nested": st.lists(st.lists(LONG, max_size=3), max_size=3),
        "table": st.dictionaries(TEXT, st.none() | _INNER | TEXT, max_size=3),
        "color": st.sampled_from(["RED", "GREEN", "BLUE"]),
        "colors": st.lists(st.sampled_from(["RED", "GREEN", "BLUE"])),
        "digest": st.binary(min_size=4, max_size=4),
        "elsewhere": _OTHER,
        "again": _OTHER,
        "flag": st.booleans(),
        "blob": st.binary() | st.binary(min_size=8190, max_size=8200),
        "real": st.floats(width=32) | st.integers(-(2**24), 2**24),
        "many": st.dictionaries(TEXT, st.lists(TEXT, max_size=2), max_size=2),
    }
)


@given(NESTED_VALUES)
@settings(max_examples=200, deadline=None)
def test_nested_records_arrays_maps_enums_and_named_references(record: dict[str, Any]) -> None:
    assert_fast_path_writes_fastavros_bytes(NESTED, record)


RECURSIVE = {
    "type": "record",
    "name": "Node",
    "fields": [
        {"name": "value", "type": "long"},
        {"name": "next", "type": ["null", "Node"], "default": None},
        {"name": "children", "type": {"type": "array", "items": "Node"}, "default": []},
    ],
}


@given(
    st.recursive(
        st.fixed_dictionaries({"value": LONG}),
        lambda inner: st.fixed_dictionaries(
            {"value": LONG},
            optional={"next": st.none() | inner, "children": st.lists(inner, max_size=2)},
        ),
        max_leaves=8,
    )
)
@settings(deadline=None)
def test_recursive_records(record: dict[str, Any]) -> None:
    assert_fast_path_writes_fastavros_bytes(RECURSIVE, record)


DEFAULTS = {
    "type": "record",
    "name": "Defaults",
    "fields": [
        {"name": "b", "type": "boolean", "default": True},
        {"name": "i", "type": "int", "default": -3},
        {"name": "l", "type": "long", "default": 2**40},
        {"name": "f", "type": "float", "default": 0.5},
        {"name": "d", "type": "double", "default": -1},
        {"name": "s", "type": "string", "default": "ễ𝄞"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["X", "Y"]}, "default": "Y"},
        {"name": "a", "type": {"type": "array", "items": "int"}, "default": [1, 2]},
        {"name": "m", "type": {"type": "map", "values": "string"}, "default": {"k": "v"}},
        {"name": "u", "type": ["null", "string"], "default": None},
        {"name": "v", "type": ["string", "null"], "default": "first"},
        {"name": "w", "type": ["null", "long"]},  # no default: null, as fastavro writes
        {
            "name": "r",
            "type": {"type": "record", "name": "In", "fields": [{"name": "x", "type": "int"}]},
            "default": {"x": 9},
        },
    ],
}


@given(st.sets(st.sampled_from([f["name"] for f in DEFAULTS["fields"]])))  # type: ignore[index]
def test_absent_fields_are_written_as_their_default(present: set[str]) -> None:
    full = {
        "b": False, "i": 1, "l": -1, "f": 1.25, "d": 2.5, "s": "", "e": "X", "a": [],
        "m": {}, "u": "x", "v": None, "w": 5, "r": {"x": -1},
    }  # fmt: skip
    assert_fast_path_writes_fastavros_bytes(
        DEFAULTS, {name: value for name, value in full.items() if name in present}
    )


def test_an_absent_field_without_default_is_fastavros_error() -> None:
    schema = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}
    fast, full = _compiled(json.dumps(schema))
    with pytest.raises(ValueError, match="no value and no default for x"):
        full({})
    with pytest.raises(Exception):  # noqa: B017, PT011 - any: the fallback's cue
        fast({})


@pytest.mark.parametrize(("precision", "scale"), [(1, 0), (5, 2), (12, 2), (40, 10), (3, 3)])
@given(
    value=st.decimals(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**80), 2**80).map(Decimal)
    | st.sampled_from([Decimal("-128"), Decimal("127"), Decimal("-1.28"), Decimal("-0.00")])
)
@settings(max_examples=150, deadline=None)
def test_decimals_are_fastavros_bytes_or_error(precision: int, scale: int, value: Any) -> None:
    decimal = {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}
    for schema in (decimal, ["null", decimal]):
        assert_same_outcome(schema, value)
        if _fastavro_takes(schema, value):
            assert_fast_path_writes_fastavros_bytes(schema, value)


@given(st.integers(-(10**12) + 1, 10**12 - 1), st.integers(0, 2))
def test_decimals_at_or_below_the_schemas_scale(unscaled: int, shift: int) -> None:
    """fastavro pads a decimal of fewer fractional digits to the scale, and sizes its bytes
    from the magnitude: -128 takes two bytes (ff 80), as Java's BigInteger would not."""
    schema = {"type": "bytes", "logicalType": "decimal", "precision": 14, "scale": 2}
    assert_fast_path_writes_fastavros_bytes(schema, Decimal(unscaled).scaleb(-2 + shift))
    assert _fastavro(schema, Decimal("-1.28")) == b"\x04\xff\x80"
    assert_fast_path_writes_fastavros_bytes(schema, Decimal("-1.28"))


@pytest.mark.parametrize(
    "schema",
    ["long", '"string"', ["null", "double"], {"type": "array", "items": "boolean"}],
    ids=str,
)
def test_schemas_that_are_not_records(schema: Any) -> None:
    values = {
        "long": -(2**63),
        '"string"': "𝄞",
        json.dumps(["null", "double"]): 0.1,
        json.dumps({"type": "array", "items": "boolean"}): [True, False],
    }
    encode = compile_fast_path(schema)
    assert encode is not None
    value = values[schema if isinstance(schema, str) else json.dumps(schema)]
    parsed = json.loads(schema) if schema == '"string"' else schema
    assert encode(value) == _fastavro(parsed, value)


# --- what fastavro writes loosely, or refuses: the fallback ----------------------------------


class Level(enum.IntEnum):
    HIGH = 3


LOOSE_SCHEMA = {
    "type": "record",
    "name": "Loose",
    "fields": [
        {"name": "l", "type": "long", "default": 0},
        {"name": "i", "type": "int", "default": 0},
        {"name": "b", "type": "boolean", "default": False},
        {"name": "d", "type": "double", "default": 0.0},
        {"name": "f", "type": "float", "default": 0.0},
        {"name": "s", "type": "string", "default": ""},
        {"name": "y", "type": ["null", "bytes"], "default": None},
        {"name": "a", "type": {"type": "array", "items": "long"}, "default": []},
        {"name": "u", "type": ["null", "long", "string"], "default": None},
        {
            "name": "r",
            "type": [
                "null",
                {"type": "record", "name": "In", "fields": [{"name": "x", "type": "long"}]},
            ],
            "default": None,
        },
    ],
}


@pytest.mark.parametrize(
    "record",
    [
        {"l": True},  # a bool is an int to fastavro's long writer
        {"l": Level.HIGH},
        {"l": 2**63},  # OverflowError
        {"i": 2**40},  # written as a long outside a union
        {"b": None},  # any truth value
        {"b": "yes"},
        {"d": "NaN"},  # float() of a record field's double
        {"d": True},
        {"f": 1e300},  # a C cast to float: infinity
        {"f": -1e300},
        {"f": float("nan")},
        {"s": b"bytes"},  # no encode(): TypeError
        {"s": "\ud800"},  # UnicodeEncodeError
        {"y": bytearray(b"\x00\x01")},
        {"y": "text"},
        {"y": memoryview(b"view")},
        {"a": (1, 2)},  # any iterable
        {"a": [True]},
        {"u": True},  # no branch takes a bool: ValueError
        {"u": ("string", "tuple notation")},
        {"u": 2**63},
        {"r": {"x": 1, "-type": "In"}},
        {"r": {"x": 1, "-type": "Other"}},
        {"r": OrderedDict(x=1)},
        {"r": defaultdict(int)},
        {"r": {"x": "not a long"}},
        {"r": {}},
        OrderedDict(l=1),
        defaultdict(lambda: 5),
        {"unknown": 1},
    ],
    ids=repr,
)
def test_values_fastavro_takes_loosely_or_refuses(record: Mapping[str, Any]) -> None:
    assert_same_outcome(LOOSE_SCHEMA, record)


def test_a_bytes_default_is_fastavros_error() -> None:
    """A bytes default is JSON text: fastavro cannot write it (TypeError), nor can we."""
    schema = {
        "type": "record",
        "name": "R",
        "fields": [{"name": "y", "type": "bytes", "default": "ÿ"}],
    }
    assert_same_outcome(schema, {})
    assert _outcome(lambda r: _fastavro(schema, r), {}) is TypeError


def test_the_fallback_is_only_for_the_odd_value() -> None:
    fast, _ = _compiled(json.dumps(LOOSE_SCHEMA))
    with pytest.raises(Exception):  # noqa: B017, PT011 - any: the fallback's cue
        fast({"l": True})
    assert fast({"l": 1}) == _fastavro(LOOSE_SCHEMA, {"l": 1})


# --- constructs not compiled ------------------------------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "long", "logicalType": "local-timestamp-millis"},
        {"type": "int", "logicalType": "date"},
        {"type": "int", "logicalType": "time-millis"},
        {"type": "long", "logicalType": "time-micros"},
        {"type": "string", "logicalType": "uuid"},
        {
            "type": "fixed",
            "name": "Money",
            "size": 8,
            "logicalType": "decimal",
            "precision": 10,
            "scale": 2,
        },
        ["null", ["long", "string"]],
        {"type": "error", "name": "Failure", "fields": []},
        {
            "type": "record",
            "name": "R",
            "fields": [{"name": "at", "type": ["null", {"type": "int", "logicalType": "date"}]}],
        },
    ],
    ids=json.dumps,
)
def test_unsupported_constructs_are_left_to_fastavro(schema: Any) -> None:
    assert compile_encoder(schema) is None
    assert compile_fast_path(schema) is None


def test_unknown_logical_types_are_their_base_type() -> None:
    schema = {"type": "long", "logicalType": "civsync-thing"}
    encode = compile_fast_path(schema)
    assert encode is not None
    assert encode(300) == _fastavro(schema, 300)


def test_a_schema_fastavro_cannot_parse_raises_fastavros_error() -> None:
    with pytest.raises(fastavro.schema.UnknownType):
        compile_encoder({"type": "record", "name": "R", "fields": [{"name": "x", "type": "Y"}]})
