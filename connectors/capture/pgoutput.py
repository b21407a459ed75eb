"""Decoding of pgoutput (protocol version 1) messages into civsync change events.

pgoutput frames each transaction with Begin (B), which already names the commit LSN that
makes event ids stable, and Commit (C), whose end LSN is the position capture confirms. A
Relation (R) message describes a table before its first change and again after DDL: its
columns and their type oids as of that position in the WAL, which the catalog names once per
type, and the table's primary key, looked up once per Relation message (``Catalog``), never
per change. An Origin (O) message marks a transaction replayed by one of
civsync's own writers: its changes are skipped (no echo). Logical messages (M) carry the
snapshot watermarks.

A primary-key update becomes a delete of the old key and a create of the new one, as
Debezium does, so each key's history stays on one partition. Values are PostgreSQL's text
form, typed as the published envelope wants (``value_of``); text is normalised to NFC, JSON
is not (its escapes would break: ``\\n`` and a combining mark make ``\\ň``). An
unchanged TOAST value (pgoutput's ``u``) is taken from the old row image where the table has
REPLICA IDENTITY FULL; otherwise the column is absent from ``after`` and named in
``unavailable``, never filled with a placeholder.
"""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from engine.events import ChangeEvent, Op, Row, Source, Value, commit_hlc, event_id

CIVSYNC_SCHEMA = "_civsync"  # civsync's own bookkeeping tables: never published
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since the Unix epoch
_INTEGER_TYPES = frozenset({"smallint", "integer", "bigint", "oid"})
_FLOAT_TYPES = frozenset({"real", "double precision"})
_JSON_TYPES = frozenset({"json", "jsonb"})
_ACTIONS = {b"I": Op.CREATE, b"U": Op.UPDATE, b"D": Op.DELETE}


class MalformedChangeError(ValueError):
    """A pgoutput message civsync cannot turn into an event; the message says why, and
    ``table`` which table it changed, where known."""

    def __init__(self, detail: str, table: str | None = None) -> None:
        super().__init__(detail)
        self.table = table


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


@dataclass(frozen=True)
class TableInfo:
    """What the catalog says of a relation: its primary key and each column's type name."""

    key: tuple[str, ...]
    types: Mapping[str, str]


class Catalog(Protocol):
    """Looks a relation's primary key up in the store's catalog (once per Relation message),
    and names a column's type (once per type)."""

    def describe(self, relid: int) -> TableInfo: ...

    def type_name(self, oid: int, typmod: int) -> str:
        """The base type (a domain's underlying type) as ``format_type`` names it."""
        ...


@dataclass(frozen=True)
class _Relation:
    schema: str
    table: str
    columns: tuple[str, ...]
    identity: tuple[bool, ...]  # per column: part of the replica identity
    info: TableInfo


@dataclass
class _Transaction:
    commit_lsn: int
    txid: int
    commit_ts_ms: int
    skip: bool = False  # replayed by one of civsync's writers
    sequence: int = 0


@dataclass
class _Reader:
    """A cursor over one message's bytes."""

    data: bytes
    at: int = 0

    def byte(self) -> bytes:
        self.at += 1
        return self.data[self.at - 1 : self.at]

    def int8(self) -> int:
        return self.data[self._skip(1)]

    def int16(self) -> int:
        return int(struct.unpack_from("!h", self.data, self._skip(2))[0])

    def int32(self) -> int:
        return int(struct.unpack_from("!i", self.data, self._skip(4))[0])

    def int64(self) -> int:
        return int(struct.unpack_from("!q", self.data, self._skip(8))[0])

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text, self.at = self.data[self.at : end].decode(), end + 1
        return text

    def raw(self, length: int) -> bytes:
        return self.data[self._skip(length) : self.at]

    def _skip(self, length: int) -> int:
        start, self.at = self.at, self.at + length
        if self.at > len(self.data):
            raise MalformedChangeError(f"message ends {self.at - len(self.data)} bytes early")
        return start


@dataclass
class PgOutputDecoder:
    """Turns the pgoutput messages of one slot into events, one transaction at a time."""

    store: str
    db: str
    catalog: Catalog
    skip_origins: frozenset[str] = frozenset()
    _relations: dict[int, _Relation] = field(default_factory=dict)
    _type_names: dict[tuple[int, int], str] = field(default_factory=dict)
    _txn: _Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        """Between a Begin and its Commit: a position read now may split a transaction."""
        return self._txn is not None

    def decode(self, lsn: int, payload: bytes) -> Iterator[Decoded]:
        """Events for one message (``lsn``: its WAL position) of the slot's output."""
        message = _Reader(payload)
        kind = message.byte()
        if kind == b"B":
            commit_lsn, ts, xid = message.int64(), message.int64(), message.int32()
            self._txn = _Transaction(commit_lsn, xid, _ms(ts))
        elif kind == b"C":
            message.int8()  # flags, unused
            message.int64()  # the commit record's LSN, known from Begin
            end_lsn = message.int64()
            txn, self._txn = self._txn, None
            yield TransactionEnd(end_lsn, txn.txid if txn else None)
        elif kind == b"O":
            message.int64()
            if self._txn is not None and message.string() in self.skip_origins:
                self._txn.skip = True
        elif kind == b"R":
            self._relation(message)
        elif kind == b"M":
            yield self._message(message, lsn)
        elif kind in _ACTIONS:
            yield from self._row_change(kind, message, lsn)
        elif kind not in (b"Y", b"T"):  # types and TRUNCATE: not row changes
            raise MalformedChangeError(f"unknown pgoutput message {kind!r}")

    def _relation(self, message: _Reader) -> None:
        relid, schema, table = message.int32(), message.string(), message.string()
        message.int8()  # replica identity setting: the columns' flags say what it covers
        columns, identity, types = [], [], {}
        for _ in range(message.int16()):
            flags, name, oid, typmod = message.int8(), message.string(), *_type(message)
            columns.append(name)
            identity.append(bool(flags & 1))
            types[name] = self._type_name(oid, typmod)
        if schema == CIVSYNC_SCHEMA:
            info = TableInfo((), types)
        else:  # the columns and types as of the change's position in the WAL, not as of now
            info = TableInfo(self.catalog.describe(relid).key, types)
        self._relations[relid] = _Relation(schema, table, tuple(columns), tuple(identity), info)

    def _type_name(self, oid: int, typmod: int) -> str:
        name = self._type_names.get((oid, typmod))
        if name is None:
            name = self._type_names[(oid, typmod)] = self.catalog.type_name(oid, typmod)
        return name

    def _message(self, message: _Reader, lsn: int) -> LogMessage:
        message.int8()  # flags: transactional or not
        at, prefix = message.int64(), message.string()
        content = message.raw(message.int32()).decode()
        txn = self._txn  # None for a non-transactional message
        return LogMessage(
            prefix,
            content,
            at or lsn,
            txn.commit_lsn if txn else at,
            txn.commit_ts_ms if txn else 0,
        )

    def _row_change(self, kind: bytes, message: _Reader, lsn: int) -> Iterator[ChangeEvent]:
        txn = self._txn
        if txn is None:
            raise MalformedChangeError("row change outside a transaction")
        relation = self._relations.get(message.int32())
        if relation is None:
            raise MalformedChangeError("row change of a relation never described")
        if txn.skip or relation.schema == CIVSYNC_SCHEMA:
            return
        op, old, new = _ACTIONS[kind], None, None
        toasted: tuple[str, ...] = ()
        tag = message.byte()
        if tag in (b"K", b"O"):
            old, _ = _tuple(message, relation, identity_only=tag == b"K")
            tag = message.byte() if kind == b"U" else b""
        if tag == b"N":
            new, toasted = _tuple(message, relation, identity_only=False)
        if toasted and old is not None:  # REPLICA IDENTITY FULL has the old value
            new = {**{c: old[c] for c in toasted if c in old}, **(new or {})}
            toasted = tuple(c for c in toasted if c not in old)
        key_columns = relation.info.key
        old_key, new_key = _key(key_columns, old), _key(key_columns, new)
        event = _EventFactory(self, relation, txn, lsn, toasted)
        if op is Op.UPDATE and old_key is not None and new_key is not None and old_key != new_key:
            yield event(Op.DELETE, old_key, old, None)
            yield replace(event(Op.CREATE, new_key, None, new), previous_key=old_key)
            return
        key = new_key if new_key is not None else old_key
        if key is None:
            table = f"{relation.schema}.{relation.table}"
            raise MalformedChangeError(f"{table}: change carries no key columns", table)
        yield event(op, key, old, new)


@dataclass(frozen=True)
class _EventFactory:
    decoder: PgOutputDecoder
    relation: _Relation
    txn: _Transaction
    lsn: int
    unavailable: tuple[str, ...]

    def __call__(self, op: Op, key: Row, before: Row | None, after: Row | None) -> ChangeEvent:
        txn, store = self.txn, self.decoder.store
        sequence, txn.sequence = txn.sequence, txn.sequence + 1
        return ChangeEvent(
            event_id=event_id(store, txn.commit_lsn, sequence),
            op=op,
            source=Source(
                store=store,
                db=self.decoder.db,
                schema=self.relation.schema,
                table=self.relation.table,
                lsn=self.lsn,
                commit_lsn=txn.commit_lsn,
                txid=txn.txid,
                commit_ts_ms=txn.commit_ts_ms,
            ),
            key=key,
            before=before if op is not Op.CREATE else None,
            after=after if op is not Op.DELETE else None,
            column_types=self.relation.info.types,
            hlc=commit_hlc(store, txn.commit_ts_ms, sequence),
            unavailable=self.unavailable if op is Op.UPDATE else (),
        )


def _tuple(
    message: _Reader, relation: _Relation, *, identity_only: bool
) -> tuple[dict[str, Value], tuple[str, ...]]:
    """A row image, and the columns whose unchanged TOAST value it leaves out."""
    count = message.int16()
    if count != len(relation.columns):
        raise MalformedChangeError(
            f"{relation.schema}.{relation.table}: a row of {count} columns,"
            f" the relation has {len(relation.columns)}"
        )
    row: dict[str, Value] = {}
    toasted = []
    types = relation.info.types
    for name, in_identity in zip(relation.columns, relation.identity, strict=True):
        kind = message.byte()
        if kind == b"t":
            text = message.raw(message.int32()).decode()
            if not identity_only or in_identity:
                row[name] = value_of(types.get(name, "text"), text)
        elif kind == b"n":
            if not identity_only or in_identity:
                row[name] = None
        elif kind == b"u":
            toasted.append(name)
        else:
            raise MalformedChangeError(f"unknown column kind {kind!r} in {relation.table}")
    return row, tuple(toasted)


def _type(message: _Reader) -> tuple[int, int]:
    """A Relation column's type oid and typmod."""
    oid = int(struct.unpack_from("!I", message.raw(4))[0])
    return oid, message.int32()


def _key(columns: tuple[str, ...], row: Mapping[str, Value] | None) -> dict[str, Value] | None:
    if row is None or not columns or any(name not in row for name in columns):
        return None
    return {name: row[name] for name in columns}


def _ms(pg_timestamp_us: int) -> int:
    return (pg_timestamp_us + _PG_EPOCH_US) // 1000


def value_of(pg_type: str, text: str | None) -> Value:
    """The published form of a column value of PostgreSQL type ``pg_type``, from its text."""
    if text is None:
        return None
    if pg_type == "boolean":
        return text in ("t", "true")  # the column's output, or its cast to text
    if pg_type == "bytea":
        return text.removeprefix("\\x")  # hex digits
    if pg_type in _INTEGER_TYPES:
        return int(text)
    if pg_type in _FLOAT_TYPES:
        return float(text)
    # JSON as written: NFC would merge an escape's last letter (the n of \n, a hex digit of
    # \u00e9) with a combining mark after it, and the JSON would break
    kept = pg_type in _JSON_TYPES or unicodedata.is_normalized("NFC", text)
    return text if kept else unicodedata.normalize("NFC", text)
