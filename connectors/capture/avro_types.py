"""The type table of civsync's typed topics: for each PostgreSQL base type (as
``format_type()`` names it), its Avro type with Debezium's ``connect.*`` attributes, and the two
conversions between it and the published form (``decimal.handling.mode=precise``,
``time.precision.mode=adaptive``). Pure: no I/O.

The published form is ``engine.events.Value``: PostgreSQL's text output for everything but
booleans, integers and floats, bytea as hex digits without ``\\x``. Decoding gives it back in
these normal forms, so ``decode(encode(value)) == value``: dates ``YYYY-MM-DD``; timestamps
without time zone ``YYYY-MM-DD HH:MM:SS[.ffffff]`` with the fraction's trailing zeros dropped,
as PostgreSQL prints them; numeric as plain decimal text with the column's scale; bytea as
lowercase hex. Two types change form on the way: ``timestamp with time zone`` and ``time with
time zone`` become Debezium's ISO-8601 strings in UTC (``2025-07-01T01:00:00Z``,
``01:00:00Z``); their encoders accept both PostgreSQL's output and that ISO form, so one pass
reaches a fixed point.

Deviations from Debezium, on purpose:

* arrays, and every type not in the table (interval, money, inet, enums, hstore, ...), are an
  Avro ``string`` carrying PostgreSQL's text form; Debezium maps arrays to Avro arrays and has
  its own types for some of the others;
* an unconstrained ``numeric`` keeps PostgreSQL's display scale in its VariableScaleDecimal
  (``12.50`` is scale 2); Debezium strips trailing zeros (scale 1). The number is the same;
* ``infinity`` is refused for dates and timestamps without time zone (Debezium writes sentinel
  values); ``NaN`` and ``Infinity`` numerics are refused (Debezium has no precise form either).
"""

from __future__ import annotations

import contextlib
import decimal
import math
import re
import struct
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from engine.events import Value

Encode = Callable[[Value], Any]
Decode = Callable[[Any], Value]


class Codec(NamedTuple):
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
        with contextlib.suppress(OverflowError):  # rounded past float32's largest (3.4e38)
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


def _decimal(precision: int, scale: int) -> Codec:
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
    return Codec(schema, to_avro, _decimal_text)


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


_VARIABLE = Codec(
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


_TEXT = Codec("string", _text, _same)
_BY_NAME: dict[str, Codec] = {
    "boolean": Codec("boolean", _boolean, _same),
    "smallint": Codec(
        {"type": "int", "connect.type": "int16"}, _integer(-(2**15), 2**15 - 1), _same
    ),
    "integer": Codec("int", _integer(-(2**31), 2**31 - 1), _same),
    "bigint": Codec("long", _integer(-(2**63), 2**63 - 1), _same),
    "oid": Codec("long", _integer(0, 2**32 - 1), _same),  # Debezium: INT64
    "real": Codec("float", _real, _real_from),
    "double precision": Codec("double", _double, _same),
    "text": _TEXT,
    "character varying": _TEXT,
    "character": _TEXT,
    "date": Codec(_connect("int", "io.debezium.time.Date"), _date_to, _date_from),
    "timestamp with time zone": Codec(
        _connect("string", "io.debezium.time.ZonedTimestamp"), _zoned_timestamp_to, _same
    ),
    "time with time zone": Codec(
        _connect("string", "io.debezium.time.ZonedTime"), _zoned_time_to, _same
    ),
    "uuid": Codec(_connect("string", "io.debezium.data.Uuid"), _text, _same),
    "json": Codec(_connect("string", "io.debezium.data.Json"), _text, _same),
    "jsonb": Codec(_connect("string", "io.debezium.data.Json"), _text, _same),
    "bytea": Codec("bytes", _bytea_to, _bytea_from),
}
_TIMESTAMP_MS = Codec(_connect("long", "io.debezium.time.Timestamp"), *_timestamp(1000))
_TIMESTAMP_US = Codec(_connect("long", "io.debezium.time.MicroTimestamp"), *_timestamp(1))
_TIME_MS = Codec(_connect("int", "io.debezium.time.Time"), *_time(1000))
_TIME_US = Codec(_connect("long", "io.debezium.time.MicroTime"), *_time(1))


def codec(pg_type: str) -> Codec:
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


def semantic(avro_type: Any) -> str:
    """What a field's Avro type means: its Connect name, else logical type, else Connect
    type, else the Avro type (a named type referenced by name is that name)."""
    if isinstance(avro_type, str):
        return avro_type
    for key in ("connect.name", "logicalType", "connect.type", "type"):
        if key in avro_type:
            return str(avro_type[key])
    raise ValueError(f"unrecognised Avro type {avro_type!r}")


_DECODERS: dict[str, Decode] = {
    semantic(codec.schema): codec.from_avro
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


def decoder(avro_type: Any) -> Decode | None:
    """The conversion back to the published form of a field's Avro type, by what it means;
    None for a type with no published form."""
    return _DECODERS.get(semantic(avro_type))
