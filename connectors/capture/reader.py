"""Reading civsync's change events back, as ``engine.events.Change``: the form the merger maps.

A topic's records are typed per table (``envelope``): dates as days, decimals as bytes,
timestamps with a zone as ISO text. A reader inside civsync wants the published form
(``engine.events.Value``: PostgreSQL's text for everything but booleans, integers and
floats), whatever version of the table's schema wrote the record. The converters are built
once per writer schema id, from the schema the registry holds for it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from connectors.capture.envelope import from_avro_row
from connectors.kafka.avro import AvroDecoder, DecodingError, schema_id
from connectors.registry import SchemaRegistry
from engine.events import Change, Hlc, Op, SnapshotMarker, Source, Value

_Row = Callable[[Mapping[str, Any]], dict[str, Value]]


class ChangeEventReader:
    """Decodes a change event into a ``Change``, its rows (``before``, ``after``,
    ``previous_key``) in the published form."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self._registry = registry
        self._decoder = AvroDecoder(registry)
        self._rows: dict[int, tuple[_Row, _Row]] = {}

    def read(self, payload: bytes, where: str) -> Change:
        """The event in ``payload``; DecodingError if it is not one: not Avro in the registry
        framing, or a record its schema allows that is no civsync change event (another
        producer's op or snapshot marker, no clock, a schema without ``Value``)."""
        event = self._decoder.decode(payload, where)
        try:
            return change_of(event, *self._converters(schema_id(payload)))
        except (KeyError, TypeError, ValueError) as exc:
            detail = f"{where}: not a civsync change event: {type(exc).__name__}: {exc}"
            raise DecodingError(detail) from exc

    def _converters(self, writer_id: int) -> tuple[_Row, _Row]:
        converters = self._rows.get(writer_id)
        if converters is None:
            records = dict(_records(json.loads(self._registry.writer_schema(writer_id))))
            converters = (from_avro_row(records["Value"]), from_avro_row(records["Key"]))
            self._rows[writer_id] = converters
        return converters


def change_of(event: Mapping[str, Any], value: _Row, key: _Row) -> Change:
    """The ``Change`` of a decoded envelope, its rows converted by ``value`` and ``key``."""
    before, after, previous = event["before"], event["after"], event.get("previous_key")
    source, hlc = event["source"], event["hlc"]
    return Change(
        event_id=event["event_id"],
        op=Op(event["op"]),
        source=Source(
            store=source["store"],
            db=source["db"],
            schema=source["schema"],
            table=source["table"],
            lsn=source["lsn"],
            commit_lsn=source.get("commit_lsn") or 0,
            txid=source.get("txId"),
            commit_ts_ms=source["ts_ms"],
            snapshot=SnapshotMarker(source.get("snapshot") or "false"),
        ),
        before=None if before is None else value(before),
        after=None if after is None else value(after),
        hlc=Hlc(hlc["wall_ms"], hlc["logical"], hlc["node"]),
        previous_key=None if previous is None else key(previous),
    )


def _records(schema: Any) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every named record defined in ``schema`` (JSON), by its short name."""
    if isinstance(schema, list):
        for branch in schema:
            yield from _records(branch)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            yield str(schema["name"]).rsplit(".", 1)[-1], schema
            for field in schema.get("fields", ()):
                yield from _records(field["type"])
        elif schema.get("type") in ("array", "map"):
            yield from _records(schema.get("items", schema.get("values")))
