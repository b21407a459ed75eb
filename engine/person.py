"""A person as the merger keeps it: the merge state, a version, and the conflicts still open.

``merge`` applies one ``PersonEdit`` and returns the conflict records it produced:
``held`` and ``kept`` when raised, ``resolved`` (a steward decided) or ``superseded`` (a later
edit settled the field) when a held conflict closes. The version grows only when the merged
view changes, so a sink can refuse to write an older version over a newer one. Given the
same edits in the same order (one partition of the edits topic), every process computes
the same result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from engine.mapping import PersonEdit
from engine.merge import Conflict, FieldEdit, Outcome, PersonState
from engine.policy import STEWARD, FieldPolicy


@dataclass(frozen=True)
class MergedPerson:
    state: PersonState
    version: int = 0
    open_conflicts: Mapping[str, Conflict] = field(default_factory=dict)  # field -> conflict

    @classmethod
    def new(cls, person: str) -> MergedPerson:
        return cls(PersonState(person))

    def view(self, policies: Mapping[str, FieldPolicy]) -> dict[str, Outcome]:
        """The merged value of every field the person has, with its provenance."""
        return {name: self.state.outcome(name, policies[name]) for name in self.state.fields}


@dataclass(frozen=True)
class MergeResult:
    person: MergedPerson
    conflicts: list[Conflict]
    changed: bool  # the merged view changed: a new version to publish and apply


def merge(
    person: MergedPerson, edit: PersonEdit, policies: Mapping[str, FieldPolicy]
) -> MergeResult:
    """``person`` after ``edit``; conflicts raised and closed; whether the view changed."""
    state, records = person.state, []
    touched = sorted(edit.fields)
    before = {name: state.outcome(name, policies[name]) for name in touched}
    for field_edit in edit.field_edits():
        state, found = state.apply(field_edit, policies[field_edit.field])
        records += found
    if state is person.state:  # a duplicate: nothing moved
        return MergeResult(person, [], changed=False)
    open_conflicts = dict(person.open_conflicts)
    held = {c.field: c for c in records if c.decision == "held"}
    for name in touched:
        outcome = state.outcome(name, policies[name])
        current = open_conflicts.get(name)
        replaced = name in held and held[name].conflict_id != _id_of(current)
        if current is not None and (current.contested != outcome.held or replaced):
            records.append(_closed(current, outcome.provenance, edit))
            del open_conflicts[name]
    open_conflicts.update(held)
    after = {name: state.outcome(name, policies[name]) for name in touched}
    changed = after != before
    merged = MergedPerson(state, person.version + int(changed), open_conflicts)
    return MergeResult(merged, records, changed)


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
