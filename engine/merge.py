"""Merging edits of a person's shared fields from both stores, with per-field provenance.

Each field keeps the latest edit from each origin (civil, population, steward) and the
earliest edit ever seen. A *learned* value is not an edit: it is a column an update's full
row image showed unchanged, so it ranks below every real edit and never counts as the
earliest; it fills a field no edit has set, and never displaces one. That state is a
join-semilattice: adding an edit is commutative, associative and idempotent, so every
delivery order, duplicate and replay ends in the same state. The merged value, and whether
a change is held for a steward, are pure functions of that state and the field's policy;
see ``engine.policy`` for the rules.

Values are compared in a normal form (``engine.normal``): two values equal there agree, are
never a conflict, and the one the rule chooses stands as it was recorded. Dates have a
precision (``engine.dates``): a date compatible with the standing one (the same year, or
year and month) agrees with it too, and the most precise of the compatible dates stands, so
a year-only date never replaces the full date it agrees with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine import dates
from engine.events import Hlc, Value
from engine.normal import equivalent
from engine.policy import CIVIL, POPULATION, STEWARD, FieldPolicy, Rule


@dataclass(slots=True)
class FieldEdit:
    """One value given to a field by one origin, with its provenance. Never changed once
    made (not ``frozen``: a frozen dataclass's ``__init__`` costs twice as much, and a merger
    decoding a person's state makes dozens)."""

    field: str
    value: Value
    origin: str
    hlc: Hlc
    event_id: str
    learned: bool = False  # read from a full row image, not set by the change: see the module

    # Total order of edits, the same in every process: learned values below real edits, then
    # clock, node, event id; origin and value last, so even two edits that wrongly share an
    # event id are ordered. Computed once per edit, as a merge compares the same edits many times.
    rank: tuple[bool, int, int, str, str, str, str] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        hlc = self.hlc
        rank = (
            not self.learned,
            hlc.wall_ms,
            hlc.logical,
            hlc.node,
            self.event_id,
            self.origin,
            repr(self.value),
        )
        self.rank = rank


@dataclass(frozen=True, slots=True)
class FieldState:
    """The latest edit per origin and the earliest edit seen, for one field of one person."""

    latest: Mapping[str, FieldEdit] = field(default_factory=dict)
    earliest: FieldEdit | None = None

    def add(self, edit: FieldEdit) -> FieldState:
        current = self.latest.get(edit.origin)
        latest = self.latest
        if current is None or edit.rank > current.rank:
            latest = {**self.latest, edit.origin: edit}
        earliest = self.earliest
        if not edit.learned and (earliest is None or edit.rank < earliest.rank):
            earliest = edit
        if latest is self.latest and earliest is self.earliest:
            return self  # nothing new: callers test identity, not deep equality
        return FieldState(latest, earliest)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The value that stands, the edit it came from, and an edit held for a steward if any."""

    value: Value
    provenance: FieldEdit | None
    held: FieldEdit | None = None


@dataclass(frozen=True)
class Conflict:
    """Two origins disagree on a field; how the rule decided. ``conflict_id`` is stable."""

    person: str
    field: str
    rule: Rule
    decision: str  # held, kept, review; and when a held or review closes: resolved, superseded
    standing: FieldEdit
    contested: FieldEdit
    outcome: FieldEdit | None = None  # for resolved and superseded: the edit that now stands
    actor: str | None = None  # for resolved: the steward

    @property
    def conflict_id(self) -> str:
        return f"{self.person}:{self.field}:{self.standing.event_id}:{self.contested.event_id}"


def decide(state: FieldState, policy: FieldPolicy) -> Outcome:
    """The merged value of a field under ``policy``."""
    if not state.latest:
        return Outcome(None, None)
    newest = max(state.latest.values(), key=lambda e: e.rank)
    if policy.rule is Rule.LWW:
        outcome = Outcome(newest.value, newest)
    elif policy.rule is Rule.AUTHORITY:
        outcome = _authority(state, policy.authority or CIVIL)
    else:
        standing = (
            state.latest.get(STEWARD)
            or state.earliest
            or min(state.latest.values(), key=lambda e: e.rank)  # only learned values so far
        )
        outcome = Outcome(standing.value, standing, _held(newest, standing))
    if newest.field in dates.DATE_FIELDS:
        return _most_precise(state, outcome)
    return outcome


def agree(field: str, a: Value, b: Value) -> bool:
    """Whether two values of ``field`` say the same: equal in the normal form, or, for
    dates, compatible (one may be more precise)."""
    return equivalent(field, a, b) or (field in dates.DATE_FIELDS and dates.compatible(a, b))


def _most_precise(state: FieldState, outcome: Outcome) -> Outcome:
    """``outcome`` with the most precise date among the origins' latest that refine the
    standing one (the newest of equally precise ones): it says more and contradicts nothing."""
    standing = outcome.provenance
    assert standing is not None  # noqa: S101 - a field with edits has a standing edit
    finer = [e for e in state.latest.values() if dates.refines(e.value, standing.value)]
    if not finer:
        return outcome
    best = max(finer, key=lambda e: (dates.precision(e.value), e.rank))
    return Outcome(best.value, best, outcome.held)


def _authority(state: FieldState, authority: str) -> Outcome:
    other = POPULATION if authority == CIVIL else CIVIL
    decided = [e for o in (authority, STEWARD) if (e := state.latest.get(o)) is not None]
    if not decided:  # nothing from the authority yet: the other store's value fills in
        edit = state.latest[other]
        return Outcome(edit.value, edit)
    standing = max(decided, key=lambda e: e.rank)
    proposed = state.latest.get(other)
    return Outcome(
        standing.value, standing, None if proposed is None else _held(proposed, standing)
    )


def _held(candidate: FieldEdit, standing: FieldEdit) -> FieldEdit | None:
    """A newer edit that disagrees with the standing value waits for a steward."""
    if candidate.rank > standing.rank and not agree(
        candidate.field, candidate.value, standing.value
    ):
        return candidate
    return None


_NO_EDITS = FieldState()


@dataclass(frozen=True, slots=True)
class PersonState:
    """Every shared field of one person."""

    person: str
    fields: Mapping[str, FieldState] = field(default_factory=dict)

    def apply(self, edit: FieldEdit, policy: FieldPolicy) -> tuple[PersonState, list[Conflict]]:
        """The state after ``edit``, and the conflicts it raised (none on a duplicate)."""
        state, conflicts, _ = self.apply_all([edit], {edit.field: policy})
        return state, conflicts

    def apply_all(
        self, edits: Iterable[FieldEdit], policies: Mapping[str, FieldPolicy]
    ) -> tuple[PersonState, list[Conflict], dict[str, Outcome]]:
        """The state after ``edits`` (one per field), the conflicts they raised, and the new
        outcome of each field they changed; duplicates change nothing."""
        fields: dict[str, FieldState] | None = None
        conflicts: list[Conflict] = []
        outcomes: dict[str, Outcome] = {}
        for edit in edits:
            before = (self.fields if fields is None else fields).get(edit.field, _NO_EDITS)
            after = before.add(edit)
            if after is before:
                continue
            if fields is None:
                fields = dict(self.fields)
            fields[edit.field] = after
            policy = policies[edit.field]
            outcomes[edit.field] = outcome = decide(after, policy)
            conflicts += self._conflicts(edit, after, outcome, policy)
        if fields is None:
            return self, [], {}
        return PersonState(self.person, fields), conflicts, outcomes

    def outcome(self, name: str, policy: FieldPolicy) -> Outcome:
        return decide(self.fields.get(name, _NO_EDITS), policy)

    def _conflicts(
        self, edit: FieldEdit, field_state: FieldState, outcome: Outcome, policy: FieldPolicy
    ) -> list[Conflict]:
        """Each other origin's differing value that ``edit`` displaced or was displaced by:
        ``held`` if it waits for a steward, ``kept`` if the rule discarded it."""
        standing = outcome.provenance
        if standing is None:
            return []
        found = []
        for other in field_state.latest.values():
            if other.origin == standing.origin or agree(edit.field, other.value, standing.value):
                continue
            if edit not in (standing, other):
                continue
            decision = "held" if other == outcome.held else "kept"
            found.append(Conflict(self.person, edit.field, policy.rule, decision, standing, other))
        return found
