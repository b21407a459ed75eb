"""From a store's captured row changes to edits of people's shared fields and identities.

A ``TableMapping`` says how one table of one store describes a person: the column holding the
person's PIN, the columns holding shared fields, and what else a row of that table means:

- ``local_key``: the store's own id of the person, so a person whose PIN is not known yet
  (a birth awaiting one) is still one person, keyed ``<store>#<id>`` (a *provisional* key);
- ``constants``: fields every row sets to a fixed value (a marriage: marital status);
- ``field_column``/``value_column``: a row that names the field it changes (a correction);
- ``link_column``: a row that says its person is now known by another key (a re-issued PIN,
  a PIN assigned to a birth); it becomes an identity link, ``PersonEdit.link_to``, and
  nothing else (the table's columns are for sinks);
- ``unknown``: column values that mean "not known" (a legacy ``unknown`` sex), read as no value;
- ``keys`` and ``apply``: for sinks, whether the table is written, and which people it holds.

A table can have several mappings (a marriage describes both spouses). ``PersonMapper`` turns
a ``Change`` (a change event as read back from its topic) into ``PersonEdit``s: only the
fields the change set are edits, so an update of one column never restates the others with
a newer clock. The other columns of an update's full row image are
*learned*: the store's current values, ranked below every real edit (``engine.merge``), so a
person whose snapshot row was superseded by that update is still known in full.

A date the change sets must be a calendar date (``engine.dates``): otherwise the change is
unusable (``date.invalid``, naming the table and the field, never the value). So is a text
larger than ``MAX_VALUE_BYTES`` (``value.too_large``), and a correction whose field column
names no field (``correction.no_field``). A learned date
that is no calendar date is left out: it says nothing usable, and the change that set it was
refused when it came.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine import dates
from engine.events import Change, Hlc, Op, Row, Value
from engine.merge import FieldEdit

PROVISIONAL = "#"  # separates store and local id in a provisional person key


def provisional_key(store: str, local_id: object) -> str:
    """The key of a person known to ``store`` only by its own id ``local_id``."""
    return f"{store}{PROVISIONAL}{local_id}"


def local_id_of(person: str, store: str) -> str | None:
    """The local id in ``person`` if it is a provisional key of ``store``, else None."""
    prefix = f"{store}{PROVISIONAL}"
    return person[len(prefix) :] if person.startswith(prefix) else None


def is_provisional(person: str) -> bool:
    return PROVISIONAL in person


def person_partition(person: str, partitions: int) -> int:
    """The partition of ``person`` among ``partitions``, the same in every process: the
    merger's edits topic, and a source topic routed by the person's column, both use it, so a
    person's events and edits share a partition number."""
    return zlib.crc32(person.encode()) % partitions


@dataclass(frozen=True)
class TableMapping:
    """One way one table of one store describes a person (see the module docstring)."""

    store: str
    table: str  # schema.table
    person_column: str
    columns: Mapping[str, str] = field(default_factory=dict)  # field -> column
    local_key: str | None = None
    constants: Mapping[str, Value] = field(default_factory=dict)
    field_column: str | None = None
    value_column: str | None = None
    link_column: str | None = None
    unknown: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # column -> values
    keys: str = "pin"  # what person_column holds for a sink: PINs, or provisional keys
    apply: bool = True  # whether a sink writes merged people into this table

    def accepts(self, person: str) -> bool:
        """Whether a sink writes ``person`` into this table: a PIN into a PIN-keyed table
        (or its own store's provisional person, found by local id), a provisional key into a
        table of provisional keys."""
        if self.keys == "provisional":
            return is_provisional(person)
        own = self.local_key is not None and local_id_of(person, self.store) is not None
        return own or not is_provisional(person)

    def key_of(self, row: Mapping[str, Value]) -> str | None:
        """The person the row describes: the PIN, else the provisional key, else None."""
        pin = row.get(self.person_column)
        if pin is not None and pin != "":
            return str(pin)
        local = row.get(self.local_key) if self.local_key else None
        return None if local is None else provisional_key(self.store, local)

    def value(self, row: Mapping[str, Value], column: str) -> Value:
        value = row.get(column)
        return None if value in self.unknown.get(column, ()) else value


@dataclass(frozen=True)
class PersonEdit:
    """Values one origin gave to some of a person's fields in one change.

    ``link_to`` makes it an identity link: the person is now known as that key, and
    everything known under this key moves there. ``former_keys`` are keys the person was
    known by, carried to the person they moved to.
    """

    person: str
    origin: str
    event_id: str
    hlc: Hlc
    fields: Mapping[str, Value]
    resolves: str | None = None  # a steward's decision: the conflict it settles
    actor: str | None = None
    link_to: str | None = None
    former_keys: tuple[str, ...] = ()
    person_row: bool = False  # from the store's row of the person itself, not an act about them
    learned: Mapping[str, Value] = field(default_factory=dict)  # unchanged columns of the row

    def field_edits(self) -> list[FieldEdit]:
        """The edits of ``fields``, then the learned values of the fields it does not set."""
        origin, hlc, event_id = self.origin, self.hlc, self.event_id
        edits = [
            FieldEdit(name, value, origin, hlc, event_id)
            for name, value in sorted(self.fields.items())
        ]
        edits += [
            FieldEdit(name, value, origin, hlc, event_id, learned=True)
            for name, value in sorted(self.learned.items())
            if name not in self.fields
        ]
        return edits

    @property
    def touched(self) -> list[str]:
        """Every field the edit says something about, set or learned, sorted."""
        return sorted({*self.fields, *self.learned})


class UnusableChange(Exception):  # noqa: N818 - a finding about input, not a program error
    """A change that cannot be merged; ``reason`` is a machine-readable quarantine code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass
class PersonMapper:
    """Maps change events of the mapped tables to person edits."""

    tables: Iterable[TableMapping]
    _by_source: dict[tuple[str, str], list[TableMapping]] = field(init=False)

    def __post_init__(self) -> None:
        self._by_source = {}
        for mapping in self.tables:
            self._by_source.setdefault((mapping.store, mapping.table), []).append(mapping)

    def edits_of(self, change: Change) -> list[PersonEdit]:
        """The person edits and identity links in ``change``; none if it sets no shared field.

        A delete edits nothing: registrations are acts, and a person is never removed by
        synchronisation; the delete stays on its source topic for auditors.
        """
        store, table = change.source.store, change.table_id
        mappings = self._by_source.get((store, table))
        if mappings is None:
            raise UnusableChange(
                "merge.unmapped_table", f"{store} table {table} has no person mapping"
            )
        after, before = change.after, change.before
        if change.op is Op.DELETE or after is None:
            return []
        return [edit for m in mappings for edit in _edits(m, change, after, before)]


def _edits(
    mapping: TableMapping, change: Change, after: Row, before: Row | None
) -> list[PersonEdit]:
    person = mapping.key_of(after)
    if person is None:
        raise UnusableChange(
            "merge.no_person_key",
            f"{mapping.store} {mapping.table}: column {mapping.person_column} is empty",
        )

    def edit(
        key: str,
        fields: Mapping[str, Value],
        link_to: str | None = None,
        former: str | None = None,
        learned: Mapping[str, Value] | None = None,
    ) -> PersonEdit:
        return PersonEdit(
            person=key,
            origin=mapping.store,
            event_id=change.event_id,
            hlc=change.hlc,
            fields=fields,
            link_to=link_to,
            former_keys=() if former is None else (former,),
            person_row=mapping.apply,
            learned=learned or {},
        )

    prior_key = _prior_key(mapping, change.op, after, before, change.previous_key)
    if mapping.link_column is not None:  # a link table's columns are only for sinks
        target = after.get(mapping.link_column)
        changed = before is None or before.get(mapping.link_column) != target
        if target in (None, "", person) or not changed:
            return []
        return [edit(person, {}, link_to=str(target))]
    # An update without the old row (no REPLICA IDENTITY FULL) restates every column.
    restates_nulls = change.op is Op.UPDATE and before is None
    if prior_key is None or prior_key == person:
        fields = _fields(mapping, after, before, restates_nulls=restates_nulls)
        learned = _learned(mapping, after, fields) if before is not None else {}
        return [edit(person, fields, learned=learned)] if fields or learned else []
    # The PIN became known, or changed: a link from the old key, and every field is news to
    # the new one, which learns its former key at once, so no sink takes it for a newcomer.
    fields = _fields(mapping, after, None, restates_nulls=restates_nulls)
    return [edit(prior_key, {}, link_to=person), edit(person, fields, former=prior_key)]


def _prior_key(
    mapping: TableMapping, op: Op, after: Row, before: Row | None, previous_key: Row | None
) -> str | None:
    """The key the row's person had before this change: from the old row of an update; from
    the old primary key of a create that a key update produced (a re-issued PIN); and for a
    new row of a person table with both a local id and a PIN, the provisional key, so that
    acts registered under the local id alone reach the person."""
    if op is Op.UPDATE and before is not None:
        return mapping.key_of(before)
    if op is Op.CREATE and previous_key and mapping.person_column in previous_key:
        return mapping.key_of(previous_key)
    local = after.get(mapping.local_key) if mapping.local_key and mapping.apply else None
    if op in {Op.CREATE, Op.READ} and local is not None:
        return provisional_key(mapping.store, local)
    return None


def _learned(
    mapping: TableMapping, after: Mapping[str, Value], fields: Mapping[str, Value]
) -> dict[str, Value]:
    """The values an update's full row image shows in the columns it did not change."""
    return {
        name: value
        for name, column in mapping.columns.items()
        if name not in fields
        and (value := mapping.value(after, column)) is not None
        and (name not in dates.DATE_FIELDS or _calendar_date(value))
    }


def _calendar_date(value: Value) -> bool:
    return isinstance(value, str) and dates.parse(value) is not None


def _check_dates(mapping: TableMapping, fields: Mapping[str, Value]) -> None:
    """Refuse a change that sets a date field to something that is no calendar date."""
    for name in sorted(dates.DATE_FIELDS.intersection(fields)):
        value = fields[name]
        if value is not None and not _calendar_date(value):
            raise UnusableChange(
                "date.invalid",
                f"{mapping.store} {mapping.table}: {name} is not a calendar date"
                " (YYYY, YYYY-MM or YYYY-MM-DD)",
            )


# The largest text value civsync takes. A person's state and history step each hold a value
# twice; four times this stays under Kafka's 1 MB record limit with room for the rest.
MAX_VALUE_BYTES = 128 * 1024


def _check_sizes(mapping: TableMapping, fields: Mapping[str, Value]) -> None:
    """Refuse a change that sets a text too large to carry (naming the field and its size)."""
    for name, value in sorted(fields.items()):
        if isinstance(value, str) and len(value) > MAX_VALUE_BYTES // 4:  # cheap first look
            size = len(value.encode())
            if size > MAX_VALUE_BYTES:
                raise UnusableChange(
                    "value.too_large",
                    f"{mapping.store} {mapping.table}: {name} is {size:,} bytes;"
                    f" civsync takes at most {MAX_VALUE_BYTES:,}",
                )


def _fields(
    mapping: TableMapping,
    after: Mapping[str, Value],
    prior: Mapping[str, Value] | None,
    *,
    restates_nulls: bool,
) -> dict[str, Value]:
    """The fields the change set: those that differ from ``prior``; without it, every
    column that holds a value (every column, NULLs included, if ``restates_nulls``)."""
    fields = {
        name: mapping.value(after, column)
        for name, column in mapping.columns.items()
        if column in after
        and (
            mapping.value(prior, column) != mapping.value(after, column)
            if prior is not None
            else restates_nulls or mapping.value(after, column) is not None
        )
    }
    if mapping.field_column and mapping.value_column and prior is None:
        name = after.get(mapping.field_column)
        if not (isinstance(name, str) and name.strip()):
            raise UnusableChange(
                "correction.no_field",
                f"{mapping.store} {mapping.table}: {mapping.field_column} names no field",
            )
        fields[name] = mapping.value(after, mapping.value_column)
    if fields or prior is None:
        fields.update(mapping.constants)
    _check_dates(mapping, fields)
    _check_sizes(mapping, fields)
    return fields
