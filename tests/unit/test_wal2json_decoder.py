"""The wal2json decoder: stable ids, exact values, primary-key updates, TOAST, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.capture.wal2json import (
    MalformedChangeError,
    TransactionEnd,
    Wal2JsonDecoder,
    value_of,
)
from engine.events import ChangeEvent, Op, event_id, format_lsn, parse_lsn

BEGIN = {
    "action": "B",
    "xid": 751,
    "timestamp": "2026-11-23 10:26:56.944703+00",
    "lsn": "0/1A07310",
    "nextlsn": "0/1A07368",
}


def _col(name: str, pg_type: str, value: Any) -> dict[str, Any]:
    return {"name": name, "type": pg_type, "value": value}


def _change(action: str, **parts: Any) -> dict[str, Any]:
    return {
        "action": action,
        "lsn": "0/1A07200",
        "schema": "public",
        "table": "person",
        "pk": [{"name": "id", "type": "bigint"}],
        **parts,
    }


def _decode(*docs: dict[str, Any], raw: str | None = None) -> list[Any]:
    decoder = Wal2JsonDecoder("civil", "civil")
    out: list[Any] = []
    for doc in docs:
        out += decoder.decode("0/1A07368", json.dumps(doc))
    if raw is not None:
        out += decoder.decode("0/1A07368", raw)
    return out


def test_ids_and_clock_come_from_the_commit_only() -> None:
    row = _change("I", columns=[_col("id", "bigint", 1), _col("full_name", "text", "An")])
    first = _decode(BEGIN, row, row, {"action": "C"})
    again = _decode(BEGIN, row, row, {"action": "C"})
    assert first == again
    events = [e for e in first if isinstance(e, ChangeEvent)]
    assert [e.event_id for e in events] == [
        event_id("civil", 0x1A07310, 0),
        event_id("civil", 0x1A07310, 1),
    ]
    assert events[0].hlc.wall_ms == 1_795_429_616_944
    assert events[0].hlc < events[1].hlc
    assert first[-1] == TransactionEnd(end_lsn=0x1A07368, txid=751)


def test_numeric_keeps_its_exact_text_and_text_becomes_nfc() -> None:
    raw = (
        '{"action":"I","lsn":"0/1","schema":"public","table":"person",'
        '"pk":[{"name":"id","type":"bigint"}],"columns":['
        '{"name":"id","type":"bigint","value":9007199254740993},'
        '{"name":"fee","type":"numeric(20,2)","value":12345678901234567.10},'
        '{"name":"full_name","type":"text","value":"Nguye\\u0302\\u0303n"}]}'
    )
    (event,) = [e for e in _decode(BEGIN, raw=raw) if isinstance(e, ChangeEvent)]
    assert event.after == {
        "id": 9007199254740993,
        "fee": "12345678901234567.10",
        "full_name": "Nguyễn",
    }


def test_a_primary_key_update_is_a_delete_and_a_create_that_names_the_old_key() -> None:
    old = [_col("id", "bigint", 1), _col("full_name", "text", "An")]
    new = [_col("id", "bigint", 2), _col("full_name", "text", "An")]
    events = [
        e
        for e in _decode(BEGIN, _change("U", identity=old, columns=new))
        if isinstance(e, ChangeEvent)
    ]
    assert [(e.op, dict(e.key)) for e in events] == [(Op.DELETE, {"id": 1}), (Op.CREATE, {"id": 2})]
    assert events[0].after is None
    assert events[1].before is None
    assert (events[0].previous_key, events[1].previous_key) == (None, {"id": 1})  # the old key


def test_unchanged_toast_comes_from_the_old_row_or_stays_absent() -> None:
    old = [_col("id", "bigint", 1), _col("note", "text", "long"), _col("n", "integer", 1)]
    full = _decode(
        BEGIN,
        _change("U", identity=old, columns=[_col("id", "bigint", 1), _col("n", "integer", 2)]),
    )[0]
    assert full.after == {"id": 1, "note": "long", "n": 2}
    assert full.unavailable == ()
    keyed = _decode(
        BEGIN,
        _change(
            "U",
            identity=[_col("id", "bigint", 1)],
            columns=[_col("id", "bigint", 1), _col("n", "integer", 2)],
        ),
    )[0]
    assert "note" not in keyed.after
    assert keyed.unavailable == ()  # wal2json did not name the column at all


def test_a_change_without_key_columns_is_malformed() -> None:
    keyless = {
        "action": "I",
        "lsn": "0/1",
        "schema": "public",
        "table": "t",
        "columns": [_col("a", "text", "x")],
    }
    with pytest.raises(MalformedChangeError, match="no key columns"):
        _decode(BEGIN, keyless)


def test_garbage_is_malformed() -> None:
    with pytest.raises(MalformedChangeError, match="not JSON"):
        _decode(raw="{nope")


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_lsn_text_round_trips(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


@pytest.mark.parametrize(
    ("pg_type", "raw", "published"),
    [
        ("integer", 5, 5),
        ("double precision", "0.1", 0.1),
        ("boolean", True, True),
        ("date", "2025-07-01", "2025-07-01"),
        ("numeric", "1.50", "1.50"),
        ("text", None, None),
    ],
)
def test_values_by_type(pg_type: str, raw: Any, published: Any) -> None:
    assert value_of(pg_type, raw) == published
