"""From a store's captured row changes to edits of a person's shared fields.

A ``TableMapping`` says which table of which store carries person data, which column
identifies the person, and which column holds each shared field. ``PersonMapper`` turns a
decoded change event (the Avro record of ``schemas/change_event.avsc``) into a
``PersonEdit``: only the fields the change set, so an update of one column never restates
the others with a newer clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.events import Hlc, Value
from engine.merge import FieldEdit


@dataclass(frozen=True)
class TableMapping:
    """One table of one store that carries person fields: ``columns`` maps field -> column."""

    store: str
    table: str  # schema.table
    person_column: str
    columns: Mapping[str, str]


@dataclass(frozen=True)
class PersonEdit:
    """Values one origin gave to some of a person's fields in one change."""

    person: str
    origin: str
    event_id: str
    hlc: Hlc
    fields: Mapping[str, Value]
    resolves: str | None = None  # a steward's decision: the conflict it settles
    actor: str | None = None

    def field_edits(self) -> list[FieldEdit]:
        return [
            FieldEdit(name, value, self.origin, self.hlc, self.event_id)
            for name, value in sorted(self.fields.items())
        ]


class UnusableChange(Exception):  # noqa: N818 - a finding about input, not a program error
    """A change that cannot be merged; ``reason`` is a machine-readable quarantine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class PersonMapper:
    """Maps change events of the mapped tables to person edits."""

    tables: Iterable[TableMapping]
    _by_source: dict[tuple[str, str], TableMapping] = field(init=False)

    def __post_init__(self) -> None:
        self._by_source = {(t.store, t.table): t for t in self.tables}

    def mapping_for(self, store: str, table: str) -> TableMapping | None:
        return self._by_source.get((store, table))

    def edit_of(self, event: Mapping[str, Any]) -> PersonEdit | None:
        """The person edit in ``event``, or None when it sets no shared field.

        A delete edits nothing: registrations are acts, and a person is never removed by
        synchronisation; the delete stays on its source topic for auditors.
        """
        source = event["source"]
        table = f"{source['schema']}.{source['table']}"
        mapping = self._by_source.get((source["store"], table))
        if mapping is None:
            raise UnusableChange(
                "merge.unmapped_table", f"{source['store']} table {table} has no person mapping"
            )
        after, before = event.get("after"), event.get("before")
        if event["op"] == "d" or after is None:
            return None
        person = after.get(mapping.person_column)
        if person is None or person == "":
            raise UnusableChange(
                "merge.no_person_key",
                f"{source['store']} {table}: column {mapping.person_column} is empty",
            )
        prior = before if event["op"] == "u" else None
        if prior is not None and prior.get(mapping.person_column) != person:
            prior = None  # the row now belongs to another person: every field is news
        # A new row's empty column says nothing; an update without the old row (no REPLICA
        # IDENTITY FULL) restates every column it carries, NULLs included.
        restates_nulls = event["op"] == "u" and before is None
        fields = {
            name: after[column]
            for name, column in mapping.columns.items()
            if column in after
            and (
                prior.get(column) != after[column]
                if prior is not None
                else restates_nulls or after[column] is not None
            )
        }
        if not fields:
            return None
        hlc = event["hlc"]
        return PersonEdit(
            person=str(person),
            origin=source["store"],
            event_id=event["event_id"],
            hlc=Hlc(hlc["wall_ms"], hlc["logical"], hlc["node"]),
            fields=fields,
        )
