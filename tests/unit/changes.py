"""Captured changes for unit tests, as ``connectors.capture.reader`` gives them."""

from __future__ import annotations

from collections.abc import Mapping

from engine.events import Change, Hlc, Op, Source, Value


def change(
    op: str,
    *,
    before: Mapping[str, Value] | None = None,
    after: Mapping[str, Value] | None = None,
    previous_key: Mapping[str, Value] | None = None,
    store: str = "civil",
    schema: str = "civil",
    table: str = "birth_registration",
    event_id: str = "civil:0000000016b374d8:0",
    hlc: tuple[int, int, str] = (1_717_000_000_000, 0, "civil"),
) -> Change:
    """A change of ``schema.table`` in ``store``; rows in the published form."""
    wall_ms, logical, node = hlc
    source = Source(store, store, schema, table, 0x16B374D848, 0x16B374D8A0, 771, wall_ms)
    return Change(
        event_id, Op(op), source, before, after, Hlc(wall_ms, logical, node), previous_key
    )
