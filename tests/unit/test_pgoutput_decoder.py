"""The pgoutput decoder: stable ids, exact values, primary-key updates, TOAST, origins,
watermark messages, bad input. Messages are built byte by byte as pgoutput (protocol 1)
writes them."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.capture.pgoutput import (
    LogMessage,
    MalformedChangeError,
    PgOutputDecoder,
    TableInfo,
    TransactionEnd,
    value_of,
)
from engine.events import ChangeEvent, Op, event_id, format_lsn, parse_lsn

COMMIT_LSN, END_LSN, XID = 0x1A07310, 0x1A07368, 751
COMMIT_TS_US = 848_744_816_944_703  # 2026-11-23 10:26:56.944703 UTC, from 2000-01-01
PERSON = 16_401
COLUMNS = (("id", "bigint"), ("full_name", "text"), ("note", "text"), ("fee", "numeric(20,2)"))


OIDS = {"bigint": 20, "text": 25, "numeric(20,2)": 1700}
TYPMODS = {"numeric(20,2)": (20 << 16 | 2) + 4}  # as PostgreSQL stores numeric(p,s)


class FakeCatalog:
    def __init__(self, key: tuple[str, ...] = ("id",)) -> None:
        self.key, self.asked, self.named = key, 0, 0

    def describe(self, relid: int) -> TableInfo:
        self.asked += 1
        return TableInfo(self.key, dict(COLUMNS))

    def type_name(self, oid: int, typmod: int) -> str:
        self.named += 1
        return next(t for t, o in OIDS.items() if o == oid and TYPMODS.get(t, -1) == typmod)


def _s(text: str) -> bytes:
    return text.encode() + b"\0"


def begin() -> bytes:
    return b"B" + struct.pack("!qqi", COMMIT_LSN, COMMIT_TS_US, XID)


def commit() -> bytes:
    return b"C" + struct.pack("!bqqq", 0, COMMIT_LSN, END_LSN, COMMIT_TS_US)


def relation(relid: int = PERSON, schema: str = "public", key: Sequence[str] = ("id",)) -> bytes:
    body = struct.pack("!i", relid) + _s(schema) + _s("person") + b"d"
    body += struct.pack("!h", len(COLUMNS))
    for name, pg_type in COLUMNS:
        oid_typmod = struct.pack("!Ii", OIDS[pg_type], TYPMODS.get(pg_type, -1))
        body += struct.pack("!b", int(name in key)) + _s(name) + oid_typmod
    return b"R" + body


def tuple_data(values: Sequence[str | bytes | None]) -> bytes:
    """A row image: text values, None for NULL, b'u' for an unchanged TOAST value."""
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == b"u":
            out += b"u"
        else:
            assert isinstance(value, str)
            data = value.encode()
            out += b"t" + struct.pack("!i", len(data)) + data
    return out


def insert(values: Sequence[str | None], relid: int = PERSON) -> bytes:
    return b"I" + struct.pack("!i", relid) + b"N" + tuple_data(values)


def update(
    new: Sequence[str | bytes | None], old: Sequence[str | None] | None = None, tag: bytes = b"O"
) -> bytes:
    head = b"U" + struct.pack("!i", PERSON)
    if old is not None:
        head += tag + tuple_data(old)
    return head + b"N" + tuple_data(new)


def delete(old: Sequence[str | None], tag: bytes = b"O") -> bytes:
    return b"D" + struct.pack("!i", PERSON) + tag + tuple_data(old)


def origin(name: str) -> bytes:
    return b"O" + struct.pack("!q", 0) + _s(name)


def message(prefix: str, content: str) -> bytes:
    data = content.encode()
    return (
        b"M" + struct.pack("!bq", 1, 0x1A07320) + _s(prefix) + struct.pack("!i", len(data)) + data
    )


def _decode(*messages: bytes, catalog: FakeCatalog | None = None) -> list[Any]:
    decoder = PgOutputDecoder(
        "civil", "civil", catalog or FakeCatalog(), frozenset({"civsync_apply"})
    )
    out: list[Any] = []
    for payload in messages:
        out += decoder.decode(0x1A07200, payload)
    return out


def _events(*messages: bytes) -> list[ChangeEvent]:
    return [e for e in _decode(*messages) if isinstance(e, ChangeEvent)]


ROW = ["1", "Phạm Thị Hạnh", "ghi chú", "12345678901234567.10"]


def test_ids_and_clock_come_from_the_commit_only() -> None:
    stream = (relation(), begin(), insert(ROW), insert(ROW), commit())
    first, again = _decode(*stream), _decode(*stream)
    assert first == again
    events = [e for e in first if isinstance(e, ChangeEvent)]
    assert [e.event_id for e in events] == [
        event_id("civil", COMMIT_LSN, 0),
        event_id("civil", COMMIT_LSN, 1),
    ]
    assert events[0].hlc.wall_ms == 1_795_429_616_944
    assert events[0].hlc < events[1].hlc
    assert events[0].source.txid == XID
    assert first[-1] == TransactionEnd(end_lsn=END_LSN, txid=XID)


def test_values_are_typed_exact_and_nfc() -> None:
    decomposed = "Nguye\u0302\u0303n"
    (event,) = _events(relation(), begin(), insert(["9007199254740993", decomposed, None, "1.10"]))
    assert event.after == {
        "id": 9007199254740993,
        "full_name": "Nguyễn",
        "note": None,
        "fee": "1.10",
    }
    assert event.key == {"id": 9007199254740993}
    assert event.column_types["fee"] == "numeric(20,2)"


def test_the_catalog_is_asked_once_per_relation_message() -> None:
    catalog = FakeCatalog()
    _decode(relation(), begin(), insert(ROW), insert(ROW), commit(), catalog=catalog)
    assert catalog.asked == 1


def test_a_primary_key_update_is_a_delete_and_a_create_that_names_the_old_key() -> None:
    events = _events(relation(), begin(), update(["2", *ROW[1:]], old=ROW))
    assert [(e.op, dict(e.key)) for e in events] == [(Op.DELETE, {"id": 1}), (Op.CREATE, {"id": 2})]
    assert events[0].after is None
    assert events[1].before is None
    assert (events[0].previous_key, events[1].previous_key) == (None, {"id": 1})


def test_an_update_with_the_full_old_row_carries_both_images() -> None:
    (event,) = _events(relation(), begin(), update([*ROW[:3], "2.00"], old=ROW))
    assert event.op is Op.UPDATE
    assert event.before is not None
    assert event.before["fee"] == "12345678901234567.10"
    assert event.after is not None
    assert event.after["fee"] == "2.00"


def test_unchanged_toast_comes_from_the_old_row_or_is_named_unavailable() -> None:
    (full,) = _events(relation(), begin(), update(["1", "An", b"u", "2"], old=ROW))
    assert full.after == {"id": 1, "full_name": "An", "note": "ghi chú", "fee": "2"}
    assert full.unavailable == ()
    (keyed,) = _events(relation(), begin(), update(["1", "An", b"u", "2"]))
    assert keyed.after is not None
    assert "note" not in keyed.after
    assert keyed.unavailable == ("note",)


def test_a_key_only_old_image_holds_only_the_identity_columns() -> None:
    (event,) = _events(relation(), begin(), delete(["1", None, None, None], tag=b"K"))
    assert (event.op, event.before, event.after) == (Op.DELETE, {"id": 1}, None)


def test_writes_of_civsyncs_own_origin_are_skipped() -> None:
    """No echo: a transaction a civsync sink wrote (bound to its origin) is not published,
    and the next transaction is."""
    out = _decode(
        relation(), begin(), origin("civsync_apply"), insert(ROW), commit(), begin(), insert(ROW)
    )
    assert [type(e).__name__ for e in out] == ["TransactionEnd", "ChangeEvent"]
    assert len(_events(relation(), begin(), origin("someone_else"), insert(ROW))) == 1


def test_civsyncs_own_tables_are_never_published() -> None:
    catalog = FakeCatalog()
    out = _decode(relation(schema="_civsync"), begin(), insert(ROW), catalog=catalog)
    assert out == []
    assert catalog.asked == 0


def test_a_watermark_message_carries_its_transactions_commit() -> None:
    (mark,) = _decode(begin(), message("civsync.watermark", '{"mark": "low"}'))
    assert mark == LogMessage(
        "civsync.watermark", '{"mark": "low"}', 0x1A07320, COMMIT_LSN, 1_795_429_616_944
    )


def test_a_change_without_key_columns_is_malformed() -> None:
    with pytest.raises(MalformedChangeError, match="no key columns"):
        _decode(relation(), begin(), insert(ROW), catalog=FakeCatalog(key=()))


@pytest.mark.parametrize(
    "messages",
    [
        (b"Z",),  # no such message
        (b"B\x00",),  # cut short
        (relation(), insert(ROW)),  # a change outside a transaction
        (relation(), begin(), b"I" + struct.pack("!i", PERSON) + b"N\x00\x04t"),  # cut short
        (relation(), begin(), b"I" + struct.pack("!i", PERSON) + b"N" + tuple_data(ROW[:2])),
    ],
)
def test_garbage_is_malformed(messages: tuple[bytes, ...]) -> None:
    with pytest.raises(MalformedChangeError):
        _decode(*messages)


def test_a_change_of_a_relation_never_described_is_malformed() -> None:
    with pytest.raises(MalformedChangeError, match="never described"):
        _decode(begin(), insert(ROW))


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


@pytest.mark.parametrize(
    ("pg_type", "text", "published"),
    [
        ("integer", "5", 5),
        ("double precision", "0.1", 0.1),
        ("boolean", "t", True),
        ("boolean", "true", True),  # a snapshot's cast to text
        ("boolean", "f", False),
        ("bytea", "\\x0aff", "0aff"),
        ("date", "2025-07-01", "2025-07-01"),
        ("numeric", "1.50", "1.50"),
        ("text", None, None),
    ],
)
def test_values_by_type(pg_type: str, text: str | None, published: Any) -> None:
    assert value_of(pg_type, text) == published


def test_columns_and_types_are_the_relation_messages_as_of_the_change() -> None:
    """The Relation message lists the columns and type oids as of the change's place in the
    WAL; the catalog, read now, may have dropped or retyped a column since."""

    class AfterDrop(FakeCatalog):
        def describe(self, relid: int) -> TableInfo:
            return TableInfo(("id",), {"id": "bigint", "full_name": "integer"})

    catalog = AfterDrop()
    decoder = PgOutputDecoder("civil", "civil", catalog)
    decoded = [e for m in (relation(), begin(), insert(ROW)) for e in decoder.decode(0, m)]
    decoded += [e for m in (relation(), insert(ROW)) for e in decoder.decode(0, m)]
    first, _ = [e for e in decoded if isinstance(e, ChangeEvent)]
    assert first.after is not None
    assert first.after["note"] == "ghi chú"
    assert dict(first.column_types) == dict(COLUMNS)
    assert catalog.named == 3  # each type named once, for both Relation messages
