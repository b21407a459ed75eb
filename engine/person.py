"""A person as the merger keeps it: the merge state, a version, and the conflicts still open.

``merge`` applies one ``PersonEdit`` and returns the conflict records it produced:
``held`` and ``kept`` when raised, ``review`` when a place takes a split ward's default
successor (a steward should confirm it), ``resolved`` (a steward decided) or ``superseded`` (a later
edit settled the field) when a held conflict closes. The version grows only when the merged
view changes, so a sink can refuse to write an older version over a newer one. Given the
same edits in the same order (one partition of the edits topic), every process computes
the same result.

Identity: ``link`` moves a person to the key it is now known by (a re-issued PIN, a PIN
assigned to a birth). The person becomes a forwarding stub and everything known under the
old key is re-sent to the new one as edits, with the old key among its ``former_keys``.
The merge state is a join-semilattice, so the new key ends in the same state whatever the
order in which its own edits and the forwarded ones arrive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from engine.events import Hlc
from engine.mapping import PersonEdit
from engine.merge import Conflict, FieldEdit, Outcome, PersonState
from engine.places import PLACE_FIELDS, for_steward
from engine.policy import STEWARD, FieldPolicy


@dataclass(frozen=True, slots=True)
class MergedPerson:
    state: PersonState
    version: int = 0
    open_conflicts: Mapping[str, Conflict] = field(default_factory=dict)  # field -> conflict
    successor: str | None = None  # the key this person moved to; edits are forwarded there
    former_keys: tuple[str, ...] = ()  # keys this person was known by, sorted
    has_row: bool = False  # a store's row of the person was seen, not only acts about them
    chain: str = ""  # the hash of the person's last history step (engine.chain)
    # The view ``merge`` computed, and the policies it was computed under: a merge then
    # recomputes only the fields it touched, and publishing recomputes nothing.
    cached_view: tuple[Mapping[str, FieldPolicy], Mapping[str, Outcome]] | None = field(
        default=None, compare=False, repr=False
    )

    @classmethod
    def new(cls, person: str) -> MergedPerson:
        return cls(PersonState(person))

    def view(self, policies: Mapping[str, FieldPolicy]) -> Mapping[str, Outcome]:
        """The merged value of every field the person has, with its provenance."""
        if self.cached_view is not None and self.cached_view[0] is policies:
            return self.cached_view[1]
        view = {name: self.state.outcome(name, policies[name]) for name in self.state.fields}
        object.__setattr__(self, "cached_view", (policies, view))  # not part of equality
        return view

    def outcomes(self, names: list[str], policies: Mapping[str, FieldPolicy]) -> dict[str, Outcome]:
        """The merged value of the fields ``names`` (unset ones: no value, no provenance),
        from the cached view if there is one, without computing the others."""
        if self.cached_view is not None and self.cached_view[0] is policies:
            return {name: self.cached_view[1].get(name, _UNSET) for name in names}
        fields = self.state.fields
        return {
            name: self.state.outcome(name, policies[name]) if name in fields else _UNSET
            for name in names
        }


@dataclass(frozen=True)
class MergeResult:
    person: MergedPerson
    conflicts: list[Conflict]
    changed: bool  # the merged view changed: a new version to publish and apply


def merge(
    person: MergedPerson, edit: PersonEdit, policies: Mapping[str, FieldPolicy]
) -> MergeResult:
    """``person`` after ``edit``; conflicts raised and closed; whether the view changed."""
    touched = edit.touched
    before = person.outcomes(touched, policies)
    state, records, changed_outcomes = person.state.apply_all(edit.field_edits(), policies)
    former_keys = tuple(sorted({*person.former_keys, *edit.former_keys}))
    has_row = person.has_row or edit.person_row
    known = (former_keys, has_row) != (person.former_keys, person.has_row)  # news of identity
    if state is person.state and not known:
        return MergeResult(person, [], changed=False)  # a duplicate: nothing moved
    after = {name: changed_outcomes.get(name, before[name]) for name in touched}
    open_conflicts = dict(person.open_conflicts)
    held = {c.field: c for c in records if c.decision == "held"}
    for name in touched:
        current = open_conflicts.get(name)
        replaced = name in held and held[name].conflict_id != _id_of(current)
        if current is not None and (not _pending(current, after[name]) or replaced):
            records.append(_closed(current, after[name].provenance, edit))
            del open_conflicts[name]
    open_conflicts.update(held)
    for name in touched:
        standing = after[name].provenance
        if name in PLACE_FIELDS and name not in open_conflicts and for_steward(after[name].value):
            assert standing is not None  # noqa: S101 - a value has an edit
            review = Conflict(state.person, name, policies[name].rule, "review", standing, standing)
            records.append(review)
            open_conflicts[name] = review
    changed = after != before or known
    merged = replace(
        person,
        state=state,
        version=person.version + int(changed),
        open_conflicts=open_conflicts,
        former_keys=former_keys,
        has_row=has_row,
        cached_view=_view_after(person, policies, before, changed_outcomes),
    )
    return MergeResult(merged, records, changed)


_UNSET = Outcome(None, None)  # the outcome of a field no edit has set


def _view_after(
    person: MergedPerson,
    policies: Mapping[str, FieldPolicy],
    before: Mapping[str, Outcome],
    changed: Mapping[str, Outcome],
) -> tuple[Mapping[str, FieldPolicy], Mapping[str, Outcome]] | None:
    """The view after a merge, where it is known without deciding any other field: from the
    view kept before, or when the edit touched every field the person had (a new person)."""
    if person.cached_view is not None and person.cached_view[0] is policies:
        return policies, {**person.cached_view[1], **changed}
    if person.state.fields.keys() <= before.keys():
        return policies, {**{n: o for n, o in before.items() if o is not _UNSET}, **changed}
    return None


def _pending(conflict: Conflict, outcome: Outcome) -> bool:
    """A held conflict waits while its edit is still held; a review (a split ward's default
    successor) while the value it asks about still stands, whichever edit restated it."""
    if conflict.decision == "review":
        return conflict.standing.value == outcome.value
    return conflict.contested == outcome.held


def _id_of(conflict: Conflict | None) -> str | None:
    return None if conflict is None else conflict.conflict_id


def _closed(conflict: Conflict, standing: FieldEdit | None, edit: PersonEdit) -> Conflict:
    by_steward = edit.origin == STEWARD and standing is not None and standing.origin == STEWARD
    return replace(
        conflict,
        decision="resolved" if by_steward else "superseded",
        outcome=standing,
        actor=edit.actor if by_steward else None,
    )


@dataclass(frozen=True)
class LinkResult:
    person: MergedPerson  # the forwarding stub left under the old key
    conflicts: list[Conflict]  # the old key's open conflicts, closed as superseded
    forwarded: list[PersonEdit]  # everything known under the old key, for the new one


def link(person: MergedPerson, edit: PersonEdit) -> LinkResult:
    """Move ``person`` to ``edit.link_to``. A second link of a moved person moves nothing."""
    assert edit.link_to is not None  # noqa: S101 - callers pass identity links only
    if person.successor is not None:
        return LinkResult(person, [], [])
    key = person.state.person
    by_source: dict[tuple[str, str, Hlc], dict[str, FieldEdit]] = {}
    for state in person.state.fields.values():
        for field_edit in (*state.latest.values(), state.earliest):
            if field_edit is not None:
                source = (field_edit.origin, field_edit.event_id, field_edit.hlc)
                by_source.setdefault(source, {})[field_edit.field] = field_edit
    forwarded = [
        PersonEdit(
            edit.link_to,
            origin,
            event_id,
            hlc,
            {n: e.value for n, e in sorted(edits.items()) if not e.learned},
            learned={n: e.value for n, e in sorted(edits.items()) if e.learned},
        )
        for (origin, event_id, hlc), edits in sorted(by_source.items(), key=lambda i: i[0][2])
    ]
    forwarded.append(
        PersonEdit(
            edit.link_to,
            edit.origin,
            edit.event_id,
            edit.hlc,
            {},
            former_keys=tuple(sorted({*person.former_keys, key})),
        )
    )
    closed = [_closed(c, None, edit) for _, c in sorted(person.open_conflicts.items())]
    stub = MergedPerson(
        PersonState(key), person.version + 1, successor=edit.link_to, chain=person.chain
    )
    return LinkResult(stub, closed, forwarded)
