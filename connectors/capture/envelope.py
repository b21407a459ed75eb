"""Typed per-table Avro in Debezium's shape: the schemas, and the conversions between
civsync's published row form and typed Avro values.

This module owns three things, all pure (no I/O):

* the per-table schemas a topic carries: ``key_schema`` (record ``Key``), ``value_schema``
  (record ``Value``) and ``envelope_schema`` (record ``Envelope``: before/after/source/op/
  ts_ms/transaction as Debezium's PostgreSQL connector writes them through the Confluent or
  Apicurio Avro converter, then civsync's own fields, each with a default);
* the type table: for each PostgreSQL base type (as ``format_type()`` names it), its Avro type
  with Debezium's ``connect.*`` attributes, and the two conversions to and from it
  (``decimal.handling.mode=precise``, ``time.precision.mode=adaptive``);
* ``to_avro_row`` (published form to typed Avro, for the producer) and ``from_avro_row`` (typed
  Avro back to the published form, for a consumer that has only the writer schema).

The published form is ``engine.events.Value``: PostgreSQL's text output for everything but
booleans, integers and floats, bytea as hex digits without ``\\x``. ``from_avro_row`` returns
it in these normal forms, so ``decode(encode(row)) == row``: dates ``YYYY-MM-DD``; timestamps
without time zone ``YYYY-MM-DD HH:MM:SS[.ffffff]`` with the fraction's trailing zeros dropped, as
PostgreSQL prints them; numeric as plain decimal text with the column's scale; bytea as lowercase
hex. Two types change form on the way: ``timestamp with time zone`` and ``time with time zone``
become Debezium's ISO-8601 strings in UTC (``2025-07-01T01:00:00Z``, ``01:00:00Z``); their
encoders accept both PostgreSQL's output and that ISO form, so one pass reaches a fixed point.

Deviations from Debezium, on purpose:

* arrays, and every type not in the table (interval, money, inet, enums, hstore, ...), are an
  Avro ``string`` carrying PostgreSQL's text form; Debezium maps arrays to Avro arrays and has
  its own types for some of the others;
* every ``Value`` field is optional (``["null", T]``, default null): civsync does not know a
  column's NOT NULL, and an absent (unchanged TOAST) column must be writable as null;
* an unconstrained ``numeric`` keeps PostgreSQL's display scale in its VariableScaleDecimal
  (``12.50`` is scale 2); Debezium strips trailing zeros (scale 1). The number is the same;
* ``infinity`` is refused for dates and timestamps without time zone (Debezium writes sentinel
  values); ``NaN`` and ``Infinity`` numerics are refused (Debezium has no precise form either).
* column names must already be valid Avro names (Debezium would need
  ``field.name.adjustment.mode=avro``); others are refused when the schema is built.
"""

from __future__ import annotations

import copy
import decimal
import math
import re
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from engine.events import Value


@dataclass(frozen=True)
class Column:
    """A table column: its name and its base type as PostgreSQL's ``format_type()`` names it
    (domains already resolved), e.g. ``numeric(12,2)`` or ``timestamp(3) without time zone``."""

    name: str
    type: str


Encode = Callable[[Value], Any]
Decode = Callable[[Any], Value]


class _Codec(NamedTuple):
    """One row of the type table: the Avro type (without its null) and the two conversions.
    Neither conversion sees None: nulls are handled once, by the row converters."""

    schema: Any
    to_avro: Encode
    from_avro: Decode


# --- the published form's primitives ---------------------------------------------------------

_EXACT = decimal.Context(prec=200_000, traps=[decimal.Inexact, decimal.InvalidOperation])
_EPOCH = datetime(1970, 1, 1)  # timestamps without time zone count from here, as if UTC
_EPOCH_DAY = date(1970, 1, 1).toordinal()
_US = timedelta(microseconds=1)
_DAY_US = 86_400_000_000
_MS_PRECISION = 3  # timestamp(p)/time(p) with p <= 3 are milliseconds in adaptive mode
_CLOCK = re.compile(r"(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?")
_ZONED_CLOCK = re.compile(r"([\d:.]+)(Z|[+-]\d{2}(?::?\d{2}){0,2})")
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TYPE = re.compile(r"(?P<head>[a-z ]+?)(?:\((?P<args>\d+(?:,\d+)?)\))?(?P<tail>(?: [a-z ]+)?)")


def _text(value: Value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected PostgreSQL's text form, got {value!r}")
    return value


def _same(value: Any) -> Any:
    return value


def _boolean(value: Value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected a boolean, got {value!r}")
    return value


def _integer(low: int, high: int) -> Encode:
    """An integer in ``[low, high]``; Avro would write a wider one without complaint."""

    def to_avro(value: Value) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"expected an integer, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside [{low}, {high}]")
        return value

    return to_avro


def _double(value: Value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _real(value: Value) -> float:
    number = _double(value)
    try:
        struct.pack("<f", number)
    except OverflowError:
        raise ValueError(f"{number} is outside float32's range") from None
    return number


def _real_from(value: float) -> float:
    """The shortest decimal that reads back as the same float32, as PostgreSQL prints a real:
    Avro widens 0.1 to 0.10000000149011612, and the published form is 0.1."""
    if not math.isfinite(value):
        return value
    bits = struct.pack("<f", value)
    for digits in range(1, 10):
        shortest = float(f"{value:.{digits}g}")
        if struct.pack("<f", shortest) == bits:
            return shortest
    return value


# --- numeric -----------------------------------------------------------------------------------

_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_VARIABLE_DECIMAL = "io.debezium.data.VariableScaleDecimal"


def _number(value: Value) -> Decimal:
    text = _text(value)
    try:
        number = Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{text} has no Avro decimal form")
    return number


def _decimal_text(value: Decimal) -> str:
    return f"{value:f}"


def _decimal(precision: int, scale: int) -> _Codec:
    """numeric(p,s): Connect's Decimal, bytes of the unscaled two's-complement integer."""
    quantum = Decimal(1).scaleb(-scale)

    def to_avro(value: Value) -> Decimal:
        try:
            scaled = _number(value).quantize(quantum, context=_EXACT)
        except decimal.Inexact:
            raise ValueError(f"{value} has more than {scale} fractional digits") from None
        if len(scaled.as_tuple().digits) > precision:
            raise ValueError(f"{value} has more than {precision} digits")
        return scaled

    schema = {
        "type": "bytes",
        "scale": scale,
        "precision": precision,
        "connect.version": 1,
        "connect.parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)},
        "connect.name": _DECIMAL,
        "logicalType": "decimal",
    }
    return _Codec(schema, to_avro, _decimal_text)


def _twos_complement(number: int) -> bytes:
    """Big-endian, shortest with a sign bit: Java's ``BigInteger.toByteArray``."""
    length = (number if number >= 0 else ~number).bit_length() // 8 + 1
    return number.to_bytes(length, "big", signed=True)


def _variable_decimal_to(value: Value) -> dict[str, Any]:
    number = _number(value)
    exponent = number.as_tuple().exponent
    scale = max(-exponent, 0) if isinstance(exponent, int) else 0
    unscaled = int(number.scaleb(scale, context=_EXACT))
    return {"scale": scale, "value": _twos_complement(unscaled)}


def _variable_decimal_from(value: Mapping[str, Any]) -> str:
    unscaled = int.from_bytes(value["value"], "big", signed=True)
    return _decimal_text(Decimal(unscaled).scaleb(-value["scale"], context=_EXACT))


_VARIABLE = _Codec(
    {
        "type": "record",
        "name": "VariableScaleDecimal",
        "namespace": "io.debezium.data",
        "fields": [{"name": "scale", "type": "int"}, {"name": "value", "type": "bytes"}],
        "connect.doc": "Variable scaled decimal",
        "connect.version": 1,
        "connect.name": _VARIABLE_DECIMAL,
    },
    _variable_decimal_to,
    _variable_decimal_from,
)


# --- dates and times ---------------------------------------------------------------------------


def _connect(avro_type: str, name: str) -> dict[str, Any]:
    return {"type": avro_type, "connect.version": 1, "connect.name": name}


def _date_to(value: Value) -> int:
    return date.fromisoformat(_text(value)).toordinal() - _EPOCH_DAY


def _date_from(days: int) -> str:
    return date.fromordinal(days + _EPOCH_DAY).isoformat()


def _clock(micros: int) -> str:
    """``HH:MM:SS[.ffffff]`` from microseconds since midnight, fraction without trailing zeros."""
    seconds, fraction = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return f"{text}.{fraction:06d}".rstrip("0") if fraction else text


def _clock_micros(text: str) -> int:
    """Microseconds since midnight of ``HH:MM:SS[.ffffff]``; PostgreSQL allows ``24:00:00``."""
    match = _CLOCK.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time of day")
    hour, minute, second = (int(part) for part in match.group(1, 2, 3))
    micros = ((hour * 60 + minute) * 60 + second) * 1_000_000
    micros += int((match[4] or "").ljust(6, "0"))
    if minute > 59 or second > 59 or micros > _DAY_US:  # noqa: PLR2004 - clock limits
        raise ValueError(f"{text!r} is not a time of day")
    return micros


def _in_units(micros: int, unit: int, value: Value) -> int:
    whole, rest = divmod(micros, unit)
    if rest:
        raise ValueError(f"{value} is finer than the column's precision")
    return whole


def _timestamp_text(moment: datetime) -> str:
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return f"{moment.date().isoformat()} {_clock((moment - midnight) // _US)}"


def _timestamp(unit: int) -> tuple[Encode, Decode]:
    """timestamp without time zone, in ``unit`` microseconds since the epoch, as if UTC."""

    def to_avro(value: Value) -> int:
        moment = datetime.fromisoformat(_text(value))
        if moment.tzinfo is not None:
            raise ValueError(f"{value} has a time zone offset")
        return _in_units((moment - _EPOCH) // _US, unit, value)

    def from_avro(count: int) -> str:
        return _timestamp_text(_EPOCH + timedelta(microseconds=count * unit))

    return to_avro, from_avro


def _time(unit: int) -> tuple[Encode, Decode]:
    """time without time zone, in ``unit`` microseconds since midnight."""

    def to_avro(value: Value) -> int:
        return _in_units(_clock_micros(_text(value)), unit, value)

    def from_avro(count: int) -> str:
        return _clock(count * unit)

    return to_avro, from_avro


def _zoned_timestamp_to(value: Value) -> str:
    """Debezium's ZonedTimestamp: ISO-8601 in UTC, ``Z``, fraction only when non-zero."""
    text = _text(value)
    if text in ("infinity", "-infinity"):
        return text  # Debezium passes these through
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text} has no time zone offset")
    return _timestamp_text(moment.astimezone(UTC).replace(tzinfo=None)).replace(" ", "T") + "Z"


def _offset_seconds(offset: str) -> int:
    if offset == "Z":
        return 0
    digits = offset[1:].replace(":", "")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60 + int(digits[4:6] or 0)
    return -seconds if offset[0] == "-" else seconds


def _zoned_time_to(value: Value) -> str:
    """Debezium's ZonedTime: the time shifted to UTC, ``HH:MM:SS[.f]Z``."""
    text = _text(value)
    match = _ZONED_CLOCK.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not a time with time zone")
    local, offset = _clock_micros(match[1]), _offset_seconds(match[2])
    utc = local - offset * 1_000_000
    if not (local == _DAY_US and offset == 0):  # keep PostgreSQL's 24:00:00+00
        utc %= _DAY_US
    return _clock(utc) + "Z"


# --- the type table ----------------------------------------------------------------------------


def _bytea_to(value: Value) -> bytes:
    return bytes.fromhex(_text(value))


def _bytea_from(value: bytes) -> str:
    return value.hex()


_TEXT = _Codec("string", _text, _same)
_BY_NAME: dict[str, _Codec] = {
    "boolean": _Codec("boolean", _boolean, _same),
    "smallint": _Codec(
        {"type": "int", "connect.type": "int16"}, _integer(-(2**15), 2**15 - 1), _same
    ),
    "integer": _Codec("int", _integer(-(2**31), 2**31 - 1), _same),
    "bigint": _Codec("long", _integer(-(2**63), 2**63 - 1), _same),
    "oid": _Codec("long", _integer(0, 2**32 - 1), _same),  # Debezium: INT64
    "real": _Codec("float", _real, _real_from),
    "double precision": _Codec("double", _double, _same),
    "text": _TEXT,
    "character varying": _TEXT,
    "character": _TEXT,
    "date": _Codec(_connect("int", "io.debezium.time.Date"), _date_to, _date_from),
    "timestamp with time zone": _Codec(
        _connect("string", "io.debezium.time.ZonedTimestamp"), _zoned_timestamp_to, _same
    ),
    "time with time zone": _Codec(
        _connect("string", "io.debezium.time.ZonedTime"), _zoned_time_to, _same
    ),
    "uuid": _Codec(_connect("string", "io.debezium.data.Uuid"), _text, _same),
    "json": _Codec(_connect("string", "io.debezium.data.Json"), _text, _same),
    "jsonb": _Codec(_connect("string", "io.debezium.data.Json"), _text, _same),
    "bytea": _Codec("bytes", _bytea_to, _bytea_from),
}
_TIMESTAMP_MS = _Codec(_connect("long", "io.debezium.time.Timestamp"), *_timestamp(1000))
_TIMESTAMP_US = _Codec(_connect("long", "io.debezium.time.MicroTimestamp"), *_timestamp(1))
_TIME_MS = _Codec(_connect("int", "io.debezium.time.Time"), *_time(1000))
_TIME_US = _Codec(_connect("long", "io.debezium.time.MicroTime"), *_time(1))


def _codec(pg_type: str) -> _Codec:
    """The table row of a ``format_type()`` name; precision picks numeric's and the
    adaptive time types' row. Arrays and unknown types are text."""
    match = None if pg_type.endswith("[]") else _TYPE.fullmatch(pg_type)
    if match is None:
        return _TEXT
    name = match["head"] + match["tail"]
    args = [int(arg) for arg in match["args"].split(",")] if match["args"] else []
    millis = bool(args) and args[0] <= _MS_PRECISION
    if name == "numeric":
        return _decimal(args[0], args[1] if len(args) > 1 else 0) if args else _VARIABLE
    if name == "timestamp without time zone":
        return _TIMESTAMP_MS if millis else _TIMESTAMP_US
    if name == "time without time zone":
        return _TIME_MS if millis else _TIME_US
    return _BY_NAME.get(name, _TEXT)


def _semantic(avro_type: Any) -> str:
    """What a field's Avro type means: its Connect name, else logical type, else Connect
    type, else the Avro type (a named type referenced by name is that name)."""
    if isinstance(avro_type, str):
        return avro_type
    for key in ("connect.name", "logicalType", "connect.type", "type"):
        if key in avro_type:
            return str(avro_type[key])
    raise ValueError(f"unrecognised Avro type {avro_type!r}")


_DECODERS: dict[str, Decode] = {
    _semantic(codec.schema): codec.from_avro
    for codec in (
        *_BY_NAME.values(),
        _decimal(1, 0),
        _VARIABLE,
        _TIMESTAMP_MS,
        _TIMESTAMP_US,
        _TIME_MS,
        _TIME_US,
    )
}
_DECODERS["decimal"] = _decimal_text  # a Decimal without Connect's name


# --- schemas -----------------------------------------------------------------------------------


def _once(avro_type: Any, defined: set[str]) -> Any:
    """A copy of ``avro_type``, or its full name if this schema already defines it."""
    if isinstance(avro_type, dict) and avro_type["type"] == "record":
        full_name = f"{avro_type['namespace']}.{avro_type['name']}"
        if full_name in defined:
            return full_name
        defined.add(full_name)
    return copy.deepcopy(avro_type)


def _row_record(
    name: str, namespace: str, columns: Sequence[Column], *, optional: bool, defined: set[str]
) -> dict[str, Any]:
    fields = []
    for column in columns:
        if _AVRO_NAME.fullmatch(column.name) is None:
            raise ValueError(f"column {column.name!r} is not a valid Avro field name")
        avro_type = _once(_codec(column.type).schema, defined)
        if optional:
            fields.append({"name": column.name, "type": ["null", avro_type], "default": None})
        else:
            fields.append({"name": column.name, "type": avro_type})
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": fields,
        "connect.name": f"{namespace}.{name}",
    }


def key_schema(namespace: str, columns: Sequence[Column]) -> dict[str, Any]:
    """Record ``Key`` in ``namespace``: one required field per primary-key column."""
    return _row_record("Key", namespace, columns, optional=False, defined=set())


def value_schema(namespace: str, columns: Sequence[Column]) -> dict[str, Any]:
    """Record ``Value`` in ``namespace``: one optional field (default null) per column."""
    return _row_record("Value", namespace, columns, optional=True, defined=set())


def _nullable(name: str, avro_type: Any, doc: str | None = None) -> dict[str, Any]:
    field = {"name": name, "type": ["null", avro_type], "default": None}
    return field if doc is None else {**field, "doc": doc}


def _optional_long(name: str) -> dict[str, Any]:
    return _nullable(name, "long")


_SNAPSHOT = {
    "type": "string",
    "connect.version": 1,
    "connect.parameters": {"allowed": "true,last,false,incremental"},
    "connect.default": "false",
    "connect.name": "io.debezium.data.Enum",
}
_SOURCE = {
    "type": "record",
    "name": "Source",
    "namespace": "io.debezium.connector.postgresql",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        {"name": "snapshot", "type": [_SNAPSHOT, "null"], "default": "false"},
        {"name": "db", "type": "string"},
        _nullable("sequence", "string"),
        {"name": "schema", "type": "string"},
        {"name": "table", "type": "string"},
        _optional_long("txId"),
        _optional_long("lsn"),
        _optional_long("xmin"),
        {"name": "store", "type": "string", "default": "", "doc": "civsync: civil or population."},
        _nullable("commit_lsn", "long", "civsync: WAL position of the transaction's commit."),
    ],
    "connect.version": 1,
    "connect.name": "io.debezium.connector.postgresql.Source",
}
_BLOCK = {
    "type": "record",
    "name": "block",
    "namespace": "event",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "total_order", "type": "long"},
        {"name": "data_collection_order", "type": "long"},
    ],
    "connect.version": 1,
    "connect.name": "event.block",
}
_HLC = {
    "type": "record",
    "name": "Hlc",
    "namespace": "civsync",
    "doc": "Hybrid logical clock: ordered by wall_ms, then logical, then node.",
    "fields": [
        {"name": "wall_ms", "type": "long"},
        {"name": "logical", "type": "int"},
        {"name": "node", "type": "string"},
    ],
}


def envelope_schema(
    namespace: str, columns: Sequence[Column], key: Sequence[Column]
) -> dict[str, Any]:
    """Record ``Envelope`` in ``namespace``: Debezium's fields in Debezium's order, then
    civsync's own (each with a default, so Debezium readers skip them). ``Value`` is defined
    in ``before`` and referenced by ``after``; ``Key`` is defined in ``previous_key``."""
    defined: set[str] = set()
    value = _row_record("Value", namespace, columns, optional=True, defined=defined)
    old_key = _row_record("Key", namespace, key, optional=False, defined=defined)
    fields = [
        _nullable("before", value),
        _nullable("after", "Value"),
        {"name": "source", "type": copy.deepcopy(_SOURCE)},
        {"name": "op", "type": "string"},
        _optional_long("ts_ms"),
        _nullable("transaction", copy.deepcopy(_BLOCK)),
        {
            "name": "event_id",
            "type": "string",
            "default": "",
            "doc": "<store>:<commit LSN>:<position>; the same when a change is delivered again.",
        },
        _nullable("hlc", copy.deepcopy(_HLC)),
        {
            "name": "unavailable",
            "type": {"type": "array", "items": "string"},
            "default": [],
            "doc": "Columns whose new value the log did not carry; null in after.",
        },
        _nullable("previous_key", old_key, "The old key of a c that a primary-key update made."),
    ]
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": namespace,
        "fields": fields,
        "connect.name": f"{namespace}.Envelope",
    }


# --- rows --------------------------------------------------------------------------------------


def _convert(convert: Callable[[Any], Any], value: Any, name: str, what: str) -> Any:
    try:
        return convert(value)
    except (ValueError, TypeError, ArithmeticError) as error:
        raise ValueError(f"column {name!r} ({what}): {error}") from error


def to_avro_row(columns: Sequence[Column]) -> Callable[[Mapping[str, Value]], dict[str, Any]]:
    """The converter of a table's rows from the published form to ``value_schema``'s typed
    values. Columns absent from a row stay absent (the writer fills in null); a value that
    cannot be converted, or a column the table does not have, raises ValueError naming it."""
    encoders = [(column.name, column.type, _codec(column.type).to_avro) for column in columns]
    known = frozenset(column.name for column in columns)

    def to_avro(row: Mapping[str, Value]) -> dict[str, Any]:
        record: dict[str, Any] = {}
        for name, pg_type, encode in encoders:
            if name in row:
                value = row[name]
                record[name] = None if value is None else _convert(encode, value, name, pg_type)
        if len(record) != len(row):
            unknown = sorted(set(row) - known)
            raise ValueError(f"column {unknown[0]!r} is not in the table's schema")
        return record

    return to_avro


def _field_decoder(field: Mapping[str, Any]) -> Decode:
    branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
    typed = [branch for branch in branches if branch != "null"]
    decoder = _DECODERS.get(_semantic(typed[0])) if len(typed) == 1 else None
    if decoder is None:
        name, avro_type = field["name"], field["type"]
        raise ValueError(f"column {name!r}: no published form for Avro type {avro_type!r}")
    return decoder


def from_avro_row(
    value_schema: Mapping[str, Any],
) -> Callable[[Mapping[str, Any]], dict[str, Value]]:
    """The converter of decoded records of ``value_schema`` (the writer's ``Value`` or ``Key``
    record, plain JSON or parsed by fastavro) back to the published form, chosen per field by its
    ``connect.name``/``logicalType``. A column written as absent comes back as None: Avro cannot
    tell them apart, the envelope's ``unavailable`` does."""
    decoders = {field["name"]: _field_decoder(field) for field in value_schema["fields"]}

    def from_avro(record: Mapping[str, Any]) -> dict[str, Value]:
        row: dict[str, Value] = {}
        for name, decode in decoders.items():
            value = record.get(name)
            row[name] = None if value is None else _convert(decode, value, name, "Avro")
        return row

    return from_avro
