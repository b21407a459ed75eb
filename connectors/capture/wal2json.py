"""Decoding of wal2json (format-version 2) rows into civsync change events.

wal2json emits one JSON document per row change, framed by begin (B) and commit (C)
documents; the begin document already names the commit LSN, which is what makes event ids
stable. A primary-key update becomes a delete of the old key and a create of the new one,
as Debezium does, so each key's history stays on one partition.

Values are kept exact: ``numeric`` arrives as a bare JSON number and is read as its text;
text is normalised to NFC. Unchanged TOAST columns that wal2json leaves out of an update
are filled from the old row image when the table has REPLICA IDENTITY FULL; without it
they are simply absent (wal2json does not name them), never replaced by a placeholder.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import msgspec

from engine.events import (
    ChangeEvent,
    Op,
    Row,
    Source,
    Value,
    commit_hlc,
    event_id,
    parse_lsn,
)

WAL2JSON_OPTIONS: dict[str, str] = {
    "format-version": "2",
    "include-transaction": "true",
    "include-xids": "true",
    "include-timestamp": "true",
    "include-lsn": "true",
    "include-types": "true",
    "include-pk": "true",
    "filter-tables": "_civsync.*",  # civsync's own bookkeeping tables are never published
}

_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint", "oid"})
_FLOAT_TYPES = frozenset({"real", "double precision"})
_ACTIONS = {"I": Op.CREATE, "U": Op.UPDATE, "D": Op.DELETE}


class MalformedChangeError(ValueError):
    """A wal2json document civsync cannot turn into an event; the message says why."""


@dataclass(frozen=True)
class TransactionEnd:
    """Every change of a transaction has been decoded; ``end_lsn`` is safe to confirm."""

    end_lsn: int
    txid: int | None


@dataclass(frozen=True)
class LogMessage:
    """A ``pg_logical_emit_message`` record, used for snapshot watermarks."""

    prefix: str
    content: str
    lsn: int
    commit_lsn: int
    commit_ts_ms: int


Decoded = ChangeEvent | TransactionEnd | LogMessage


@dataclass
class _Transaction:
    commit_lsn: int
    txid: int | None
    commit_ts_ms: int
    sequence: int = 0


class Wal2JsonDecoder:
    """Turns the rows of ``pg_logical_slot_peek_changes`` into events, one transaction at a time."""

    def __init__(self, store: str, db: str) -> None:
        self._store, self._db = store, db
        self._txn: _Transaction | None = None

    def decode(self, row_lsn: str, data: str) -> Iterator[Decoded]:
        """Events for one row (``lsn``, ``data``) of the slot's output."""
        doc = _parse(data)
        action = doc.get("action")
        if action == "B":
            self._txn = _Transaction(parse_lsn(doc["lsn"]), doc.get("xid"), _ts_ms(doc))
        elif action == "C":
            txn, self._txn = self._txn, None
            yield TransactionEnd(parse_lsn(row_lsn), txn.txid if txn else doc.get("xid"))
        elif action == "M":
            lsn = parse_lsn(doc["lsn"])
            txn = self._txn  # None for a non-transactional message
            yield LogMessage(
                doc.get("prefix", ""),
                doc.get("content", ""),
                lsn,
                txn.commit_lsn if txn else lsn,
                txn.commit_ts_ms if txn else _ts_ms(doc),
            )
        elif action in _ACTIONS:
            yield from self._row_change(doc)
        elif action != "T":  # TRUNCATE is not a row change; the merger never needs it
            raise MalformedChangeError(f"unknown wal2json action {action!r}")

    def _row_change(self, doc: Mapping[str, Any]) -> Iterator[ChangeEvent]:
        if self._txn is None:
            raise MalformedChangeError(
                "row change outside a transaction (include-transaction off?)"
            )
        types = {c["name"]: c["type"] for c in (*doc.get("identity", ()), *doc.get("columns", ()))}
        old = _row(doc.get("identity"))
        new = _row(doc.get("columns"))
        pk = [c["name"] for c in doc.get("pk", ())]
        op = _ACTIONS[doc["action"]]
        if op is Op.UPDATE and new is not None and old is not None:
            missing = [name for name in old if name not in new]
            new = {**{name: old[name] for name in missing}, **new}
        old_key = _key(pk, old) if old is not None else None
        new_key = _key(pk, new) if new is not None else None
        if op is Op.UPDATE and old_key is not None and new_key is not None and old_key != new_key:
            yield self._event(doc, Op.DELETE, key=old_key, before=old, after=None, types=types)
            yield replace(
                self._event(doc, Op.CREATE, key=new_key, before=None, after=new, types=types),
                previous_key=old_key,
            )
            return
        key = new_key if new_key is not None else old_key
        if key is None:
            raise MalformedChangeError(f"{doc.get('table')}: change carries no key columns")
        yield self._event(doc, op, key=key, before=old, after=new, types=types)

    def _event(
        self,
        doc: Mapping[str, Any],
        op: Op,
        *,
        key: Row,
        before: Row | None,
        after: Row | None,
        types: Mapping[str, str],
    ) -> ChangeEvent:
        txn = self._txn
        assert txn is not None  # noqa: S101 - guaranteed by _row_change
        sequence, txn.sequence = txn.sequence, txn.sequence + 1
        return ChangeEvent(
            event_id=event_id(self._store, txn.commit_lsn, sequence),
            op=op,
            source=Source(
                store=self._store,
                db=self._db,
                schema=doc["schema"],
                table=doc["table"],
                lsn=parse_lsn(doc["lsn"]),
                commit_lsn=txn.commit_lsn,
                txid=txn.txid,
                commit_ts_ms=txn.commit_ts_ms,
            ),
            key=key,
            before=before if op is not Op.CREATE else None,
            after=after if op is not Op.DELETE else None,
            column_types=types,
            hlc=commit_hlc(self._store, txn.commit_ts_ms, sequence),
        )


# msgspec decodes four times faster than json.loads; numbers with a fraction or exponent
# (numeric, float columns) keep the exact text PostgreSQL wrote, as with parse_float=str.
_JSON = msgspec.json.Decoder(float_hook=str)


def _parse(data: str) -> dict[str, Any]:
    try:
        doc = _JSON.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedChangeError(f"not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise MalformedChangeError("a wal2json document must be a JSON object")
    return doc


def _ts_ms(doc: Mapping[str, Any]) -> int:
    return int(datetime.fromisoformat(doc["timestamp"]).timestamp() * 1000)


def _row(columns: list[dict[str, Any]] | None) -> dict[str, Value] | None:
    if columns is None:
        return None
    return {c["name"]: value_of(c["type"], c.get("value")) for c in columns}


def _key(pk: list[str], row: Mapping[str, Value]) -> dict[str, Value] | None:
    if not pk or any(name not in row for name in pk):
        return None
    return {name: row[name] for name in pk}


def value_of(pg_type: str, raw: Any) -> Value:
    """The published form of a column value of PostgreSQL type ``pg_type``."""
    if raw is None or isinstance(raw, bool):
        return raw
    if pg_type in _INTEGER_TYPES:
        return int(raw)
    if pg_type in _FLOAT_TYPES:
        return float(raw)
    text = raw if isinstance(raw, str) else str(raw)
    return text if unicodedata.is_normalized("NFC", text) else unicodedata.normalize("NFC", text)
