"""Partition routing (issue 12): a table routed by a column puts each event on the partition
of that column's value, the merger's person partition; no value falls back to the key."""

from __future__ import annotations

import pytest

from connectors.capture.publisher import TableTopic
from engine.errors import FatalError
from engine.events import ChangeEvent, Hlc, Op, Row, Source
from engine.mapping import person_partition

TYPES = {"id": "bigint", "pin": "text", "note": "text"}


def _event(op: Op, before: Row | None, after: Row | None) -> ChangeEvent:
    source = Source("civil", "civil", "public", "act", 1, 1, 7, 1_795_000_000_000)
    row = after or before
    assert row is not None
    return ChangeEvent(
        "civil:1:0", op, source, {"id": row["id"]}, before, after, TYPES, Hlc(1, 0, "civil")
    )


def test_an_event_goes_to_its_routing_values_partition_a_delete_by_its_old_row() -> None:
    created = _event(Op.CREATE, None, {"id": 1, "pin": "079195000001", "note": "x"})
    deleted = _event(Op.DELETE, {"id": 2, "pin": "079195000001", "note": "x"}, None)
    table = TableTopic.of("civsync.civil.act", created, route="pin")
    expected = person_partition("079195000001", 12)
    assert table.partition(created, 12) == expected
    assert table.partition(deleted, 12) == expected


def test_a_row_without_a_routing_value_and_an_unrouted_table_keep_the_keys_partition() -> None:
    event = _event(Op.CREATE, None, {"id": 1, "pin": None, "note": "x"})
    assert TableTopic.of("civsync.civil.act", event, route="pin").partition(event, 12) is None
    assert TableTopic.of("civsync.civil.act", event).partition(event, 12) is None


def test_routing_by_a_column_the_table_lacks_is_refused_naming_it() -> None:
    event = _event(Op.CREATE, None, {"id": 1, "pin": "079195000001", "note": "x"})
    with pytest.raises(FatalError, match="'person_pin'"):
        TableTopic.of("civsync.civil.act", event, route="person_pin")
