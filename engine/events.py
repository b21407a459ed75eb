"""Source change events: the Debezium-shaped envelope civsync publishes for every row change.

An event's id is derived only from where the change sits in its store's log (the commit
LSN of its transaction and its position inside it), so the same change delivered twice
carries the same id. Its hybrid logical clock is derived from the commit the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

# A column value as published: PostgreSQL's own text form for everything but booleans,
# integers and floats, so numeric, dates, timestamps and bytea stay exact.
Value = None | bool | int | float | str
Row = Mapping[str, Value]


class Op(enum.StrEnum):
    """Debezium operation codes."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # a snapshot row


class SnapshotMarker(enum.StrEnum):
    """Whether an event comes from the log or from a snapshot read."""

    FALSE = "false"
    INCREMENTAL = "incremental"


@dataclass(frozen=True, order=True, slots=True)
class Hlc:
    """A hybrid logical clock reading: wall time, a logical counter, the node that made it.

    Ordering is total and the same in every process: wall, then logical, then node.
    """

    wall_ms: int
    logical: int
    node: str


@dataclass(frozen=True)
class Source:
    """Where a change came from (Debezium's ``source`` block)."""

    store: str
    db: str
    schema: str
    table: str
    lsn: int
    commit_lsn: int
    txid: int | None
    commit_ts_ms: int
    snapshot: SnapshotMarker = SnapshotMarker.FALSE


@dataclass(frozen=True)
class ChangeEvent:
    """One row change, ready to publish."""

    event_id: str
    op: Op
    source: Source
    key: Row
    before: Row | None
    after: Row | None
    column_types: Mapping[str, str]
    hlc: Hlc
    unavailable: tuple[str, ...] = field(default=())
    previous_key: Row | None = None  # a c from a primary-key update: the old key

    @property
    def table_id(self) -> str:
        return f"{self.source.schema}.{self.source.table}"


@dataclass(frozen=True)
class Change:
    """A row change as its readers get it back from a topic: a ``ChangeEvent`` without what
    the topic's schemas hold (the key columns, the column types), rows in published form."""

    event_id: str
    op: Op
    source: Source
    before: Row | None
    after: Row | None
    hlc: Hlc
    previous_key: Row | None = None  # a c from a primary-key update: the old key

    @property
    def table_id(self) -> str:
        return f"{self.source.schema}.{self.source.table}"


def event_id(store: str, commit_lsn: int, sequence: int) -> str:
    """The id of the ``sequence``-th change of the transaction committed at ``commit_lsn``."""
    return f"{store}:{commit_lsn:016x}:{sequence}"


def commit_hlc(store: str, commit_ts_ms: int, sequence: int) -> Hlc:
    """The clock of a captured change: its commit time, its place in the transaction."""
    return Hlc(wall_ms=commit_ts_ms, logical=sequence, node=store)


def format_lsn(lsn: int) -> str:
    """PostgreSQL's text form of a WAL position: ``16/B374D848``."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """The integer of a PostgreSQL WAL position written ``16/B374D848``."""
    high, _, low = text.partition("/")
    if not low:
        raise ValueError(f"not a WAL position: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)
