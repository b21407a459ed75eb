"""Typed per-table Avro in Debezium's shape: a table's schemas, and its rows converted
between civsync's published form and typed Avro values. Pure: no I/O.

* ``key_schema`` (record ``Key``), ``value_schema`` (record ``Value``) and ``envelope_schema``
  (record ``Envelope``: before/after/source/op/ts_ms/transaction as Debezium's PostgreSQL
  connector writes them through the Confluent or Apicurio Avro converter, then civsync's own
  fields, each with a default);
* ``to_avro_row`` (published form to typed Avro, for the producer) and ``from_avro_row`` (typed
  Avro back to the published form, for a consumer that has only the writer schema).

Each column's Avro type and conversions come from ``avro_types``. Every ``Value`` field is
optional (``["null", T]``, default null): civsync does not know a column's NOT NULL, and an
absent (unchanged TOAST) column must be writable as null; Debezium makes NOT NULL columns
required. Column names must already be valid Avro names (Debezium would need
``field.name.adjustment.mode=avro``); others are refused when the schema is built.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from connectors.capture.avro_types import Decode, codec, decoder
from engine.events import Value

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Column:
    """A table column: its name and its base type as PostgreSQL's ``format_type()`` names it
    (domains already resolved), e.g. ``numeric(12,2)`` or ``timestamp(3) without time zone``."""

    name: str
    type: str


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
        avro_type = _once(codec(column.type).schema, defined)
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
    encoders = [(column.name, column.type, codec(column.type).to_avro) for column in columns]
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
    decode = decoder(typed[0]) if len(typed) == 1 else None
    if decode is None:
        name, avro_type = field["name"], field["type"]
        raise ValueError(f"column {name!r}: no published form for Avro type {avro_type!r}")
    return decode


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
