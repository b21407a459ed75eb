"""Merging person edits under the default policy: the version grows with the merged view,
authority conflicts are held, then resolved by a steward or superseded by a later edit, and
the merged view does not depend on the order edits arrive in."""

from __future__ import annotations

import json
from dataclasses import replace
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import Hlc, Value
from engine.mapping import PersonEdit
from engine.merge import Conflict, FieldEdit
from engine.person import MergedPerson, MergeResult, merge
from engine.policy import CIVIL, DEFAULT_POLICY, POPULATION, STEWARD, Rule

NAME = "full_name"  # civil is the authority
RELIGION = "religion"  # population is the authority


def _edit(
    origin: str,
    wall: int,
    event_id: str,
    fields: dict[str, Value],
    *,
    resolves: str | None = None,
    actor: str | None = None,
) -> PersonEdit:
    return PersonEdit("p1", origin, event_id, Hlc(wall, 0, origin), fields, resolves, actor)


def _field(edit: PersonEdit, name: str) -> FieldEdit:
    return FieldEdit(name, edit.fields[name], edit.origin, edit.hlc, edit.event_id)


def _apply(person: MergedPerson, *edits: PersonEdit) -> tuple[MergedPerson, list[MergeResult]]:
    results = []
    for edit in edits:
        result = merge(person, edit, DEFAULT_POLICY)
        results.append(result)
        person = result.person
    return person, results


CIVIL_AN = _edit(CIVIL, 1, "c1", {NAME: "Nguyễn Văn An"})
POPULATION_AN_HAT = _edit(POPULATION, 2, "p2", {NAME: "Nguyễn Văn Ân"})


def test_a_new_person_has_version_zero_and_no_fields() -> None:
    person = MergedPerson.new("p1")
    assert (person.state.person, person.version, person.open_conflicts) == ("p1", 0, {})
    assert person.view(DEFAULT_POLICY) == {}


def test_the_version_grows_by_one_only_when_the_merged_view_changes() -> None:
    person = MergedPerson.new("p1")
    both = _edit(CIVIL, 1, "c1", {NAME: "Nguyễn Văn An", "sex": "M"})
    person, [first] = _apply(person, both)
    assert (first.changed, person.version) == (True, 1)  # two fields, one version

    same, [duplicate] = _apply(person, both)
    assert (duplicate.changed, duplicate.conflicts, same) == (False, [], person)

    older = _edit(POPULATION, 0, "p0", {NAME: "Nguyễn Văn Ân"})
    person, [kept] = _apply(person, older)
    assert (kept.changed, person.version) == (False, 1)  # discarded: the view is the same
    assert [c.decision for c in kept.conflicts] == ["kept"]

    person, [renamed] = _apply(person, _edit(CIVIL, 3, "c3", {NAME: "Nguyễn Văn Bình"}))
    assert (renamed.changed, person.version) == (True, 2)
    assert person.view(DEFAULT_POLICY)[NAME].value == "Nguyễn Văn Bình"


def test_a_newer_differing_edit_of_the_other_store_is_held_as_an_open_conflict() -> None:
    person, [_, held] = _apply(MergedPerson.new("p1"), CIVIL_AN, POPULATION_AN_HAT)
    conflict = Conflict(
        "p1",
        NAME,
        Rule.AUTHORITY,
        "held",
        _field(CIVIL_AN, NAME),
        _field(POPULATION_AN_HAT, NAME),
    )
    assert held.conflicts == [conflict]
    assert held.changed
    assert person.open_conflicts == {NAME: conflict}
    outcome = person.view(DEFAULT_POLICY)[NAME]
    assert outcome.value == "Nguyễn Văn An"
    assert outcome.held == _field(POPULATION_AN_HAT, NAME)
    assert conflict.conflict_id == "p1:full_name:c1:p2"


def _closing(result: MergeResult) -> list[Conflict]:
    return [c for c in result.conflicts if c.decision in ("resolved", "superseded")]


@pytest.mark.parametrize("value", ["Nguyễn Văn Ân", "Nguyễn Văn An", "Nguyễn Văn Ấn"])
def test_a_steward_decision_resolves_the_held_conflict(value: str) -> None:
    person, [_, held] = _apply(MergedPerson.new("p1"), CIVIL_AN, POPULATION_AN_HAT)
    [raised] = held.conflicts
    decision = _edit(STEWARD, 3, "s3", {NAME: value}, resolves=raised.conflict_id, actor="x")
    person, [result] = _apply(person, decision)
    [closed] = _closing(result)
    assert closed.conflict_id == raised.conflict_id
    assert (closed.decision, closed.actor) == ("resolved", "x")
    assert closed.outcome == _field(decision, NAME)
    assert NAME not in person.open_conflicts
    outcome = person.view(DEFAULT_POLICY)[NAME]
    assert (outcome.value, outcome.provenance, outcome.held) == (
        value,
        _field(decision, NAME),
        None,
    )


@pytest.mark.parametrize("value", ["Nguyễn Văn Ân", "Nguyễn Văn Bình"])
def test_a_newer_edit_of_the_authority_supersedes_the_held_conflict(value: str) -> None:
    person, [_, held] = _apply(MergedPerson.new("p1"), CIVIL_AN, POPULATION_AN_HAT)
    [raised] = held.conflicts
    later = _edit(CIVIL, 3, "c3", {NAME: value})
    person, [result] = _apply(person, later)
    [closed] = _closing(result)
    assert closed.conflict_id == raised.conflict_id
    assert (closed.decision, closed.actor) == ("superseded", None)
    assert closed.outcome == _field(later, NAME)
    assert NAME not in person.open_conflicts
    assert person.view(DEFAULT_POLICY)[NAME].held is None


def test_a_conflict_on_one_field_leaves_the_others_alone() -> None:
    person, _ = _apply(
        MergedPerson.new("p1"),
        _edit(CIVIL, 1, "c1", {NAME: "An", RELIGION: "Không"}),
        _edit(POPULATION, 2, "p2", {NAME: "Ân", RELIGION: "Phật giáo"}),
    )
    assert set(person.open_conflicts) == {NAME}  # religion belongs to population
    view = person.view(DEFAULT_POLICY)
    assert (view[NAME].value, view[RELIGION].value) == ("An", "Phật giáo")


@pytest.mark.parametrize(
    ("population_wall", "decision"),
    [(2, "held"), (0, "kept")],
    ids=["newer-held", "older-kept"],
)
def test_a_displaced_value_of_the_other_store_is_the_same_conflict_in_either_order(
    population_wall: int, decision: str
) -> None:
    population = _edit(POPULATION, population_wall, "p", {NAME: "Nguyễn Văn Ân"})
    records = []
    for order in [(CIVIL_AN, population), (population, CIVIL_AN)]:
        _, results = _apply(MergedPerson.new("p1"), *order)
        records.append([c for r in results for c in r.conflicts])
    [[authority_first], [authority_last]] = records
    assert authority_first.decision == authority_last.decision == decision
    assert authority_first.conflict_id == authority_last.conflict_id == "p1:full_name:c1:p"


def test_a_held_conflict_that_is_no_longer_open_has_been_closed() -> None:
    """Every conflict raised as held gets a closing record or is still open: a new standing
    edit of the authority that still leaves the other store's edit held must not drop the
    conflict already raised for it (its record on civsync.conflicts would stay held)."""
    _, results = _apply(
        MergedPerson.new("p1"),
        _edit(CIVIL, 1, "c1", {NAME: "An"}),
        _edit(POPULATION, 5, "p5", {NAME: "Ân"}),  # held: p1:full_name:c1:p5
        _edit(CIVIL, 2, "c2", {NAME: "Ấn"}),  # newer than c1, older than p5: still held
    )
    person = results[-1].person
    conflicts = [c for r in results for c in r.conflicts]
    raised = {c.conflict_id for c in conflicts if c.decision == "held"}
    closed = {c.conflict_id for c in conflicts if c.decision in ("resolved", "superseded")}
    assert raised - closed == {c.conflict_id for c in person.open_conflicts.values()}


# --- order independence ---

FIELDS = [NAME, RELIGION, "sex"]


@st.composite
def histories(draw: st.DrawFn) -> list[PersonEdit]:
    """Edits from both stores and stewards; every edit has its own clock and event id."""
    count = draw(st.integers(1, 8))
    edits = []
    for i in range(count):
        origin = draw(st.sampled_from([CIVIL, POPULATION, STEWARD]))
        fields = draw(
            st.dictionaries(
                st.sampled_from(FIELDS), st.sampled_from(["An", "Ân", None]), min_size=1
            )
        )
        learned = {}
        if origin != STEWARD:  # a store's update also shows the columns it left unchanged
            values = st.sampled_from(["An", "Ân"])
            learned = draw(st.dictionaries(st.sampled_from(FIELDS), values))
        hlc = Hlc(draw(st.integers(0, 3)), i, origin)
        edits.append(PersonEdit("p1", origin, f"{origin}:{i}", hlc, fields, learned=learned))
    return edits


def test_a_person_first_seen_in_an_update_is_known_in_full_without_displacing_edits() -> None:
    """Issue 17: the snapshot row was superseded by an update of one column; the update's
    unchanged columns fill the person in, and a real edit of the other store still stands."""
    religion = PersonEdit("p1", POPULATION, "p:1", Hlc(1, 0, POPULATION), {RELIGION: "Phật giáo"})
    update = PersonEdit(
        "p1",
        CIVIL,
        "c:2",
        Hlc(2, 0, CIVIL),
        {"sex": "female"},
        learned={NAME: "Lê Thị Hoa", RELIGION: "Không"},
    )
    for order in ([religion, update], [update, religion]):
        view = _merge_all(order).view(DEFAULT_POLICY)
        assert {name: o.value for name, o in view.items()} == {
            NAME: "Lê Thị Hoa",
            "sex": "female",
            RELIGION: "Phật giáo",  # population's edit: the learned value does not displace it
        }
        name, sex = view[NAME].provenance, view["sex"].provenance
        assert name is not None
        assert name.learned
        assert sex is not None
        assert not sex.learned


def _merge_all(edits: list[PersonEdit]) -> MergedPerson:
    return reduce(
        lambda person, edit: merge(person, edit, DEFAULT_POLICY).person,
        edits,
        MergedPerson.new("p1"),
    )


@settings(max_examples=200)
@given(st.data(), histories())
def test_any_arrival_order_gives_the_same_merged_view(
    data: st.DataObject, edits: list[PersonEdit]
) -> None:
    shuffled = data.draw(st.permutations(edits))
    in_order, out_of_order = _merge_all(edits), _merge_all(shuffled)
    assert out_of_order.view(DEFAULT_POLICY) == in_order.view(DEFAULT_POLICY)
    assert out_of_order.state == in_order.state


@settings(max_examples=200)
@given(histories())
def test_the_view_kept_with_a_person_is_the_view_of_its_state(edits: list[PersonEdit]) -> None:
    person = MergedPerson.new("p1")
    person.view(DEFAULT_POLICY)  # computed once, then kept up to date edit by edit
    for edit in edits:
        person = merge(person, edit, DEFAULT_POLICY).person
    assert person.cached_view is not None
    assert person.cached_view[0] is DEFAULT_POLICY
    assert person.cached_view[1] == replace(person, cached_view=None).view(DEFAULT_POLICY)


@settings(max_examples=200)
@given(histories())
def test_an_open_conflict_always_contests_the_held_edit(edits: list[PersonEdit]) -> None:
    person = _merge_all(edits)
    for name, outcome in person.view(DEFAULT_POLICY).items():
        conflict = person.open_conflicts.get(name)
        assert (None if conflict is None else conflict.contested) == outcome.held
    assert set(person.open_conflicts) <= set(person.state.fields)


SPLIT = json.dumps({"text": "xã Tân Lập", "code": "25846", "quality": "split-default"})
CHOSEN = json.dumps({"text": "xã Tân Lập", "code": "25846", "quality": "resolved"})


def test_a_place_on_a_split_wards_default_successor_waits_for_a_steward_review() -> None:
    recorded = _edit(CIVIL, 1, "c1", {"place_of_birth": SPLIT, NAME: "Nguyễn Văn An"})
    person, (result,) = _apply(MergedPerson.new("p1"), recorded)
    (review,) = result.conflicts
    assert (review.field, review.decision, review.standing) == (
        "place_of_birth",
        "review",
        _field(recorded, "place_of_birth"),
    )
    assert person.open_conflicts == {"place_of_birth": review}
    restated = _edit(CIVIL, 2, "c2", {NAME: "Nguyễn Văn Ân", "place_of_birth": SPLIT})
    person, (again,) = _apply(person, restated)
    assert again.conflicts == []  # the same value restated (a birth act): still waiting
    assert person.open_conflicts == {"place_of_birth": review}
    decided = _edit(STEWARD, 3, "s1", {"place_of_birth": CHOSEN}, actor="lan")
    person, (closed,) = _apply(person, decided)
    resolved = [c for c in closed.conflicts if c.conflict_id == review.conflict_id]
    assert [(c.decision, c.actor) for c in resolved] == [("resolved", "lan")]
    assert person.open_conflicts == {}


def test_a_place_not_split_is_not_reviewed() -> None:
    _, (result,) = _apply(MergedPerson.new("p1"), _edit(CIVIL, 1, "c1", {"hometown": CHOSEN}))
    assert result.conflicts == []


def _place(code: str, code_list: str, ward_code: str) -> str:
    current = {"province_code": "01", "ward_code": ward_code, "name": "Phường Ba Đình"}
    return json.dumps({"text": "as recorded", "code": code, "code_list": code_list,
                       "current": current, "quality": "merged"})  # fmt: skip


def test_a_place_recorded_in_the_other_list_is_no_conflict_and_no_new_version() -> None:
    """Issue 13: one store re-records its addresses in 2025 codes; nothing waits for a steward."""
    old = _place("00001", "pre-2025", "00004")
    recorded = _edit(POPULATION, 1, "p1", {"permanent_residence": old})
    person, _ = _apply(MergedPerson.new("p1"), recorded)
    new = _place("00004", "2025", "00004")
    person, (again,) = _apply(person, _edit(CIVIL, 2, "c2", {"permanent_residence": new}))
    assert (again.conflicts, again.changed, person.open_conflicts) == ([], False, {})
    assert person.view(DEFAULT_POLICY)["permanent_residence"].value == old  # as recorded
    moved = _place("00006", "2025", "00006")
    _, (contested,) = _apply(person, _edit(CIVIL, 3, "c3", {"permanent_residence": moved}))
    assert [c.decision for c in contested.conflicts] == ["held"]


def test_a_legacy_year_does_not_displace_the_population_stores_full_date() -> None:
    full = _edit(POPULATION, 1, "p1", {"birth_date": "1985-03-12", NAME: "Lê Thị Hòa"})
    legacy = _edit(CIVIL, 2, "c2", {"birth_date": "1985", NAME: "Lê Thị Hoà"})
    for order in ([full, legacy], [legacy, full]):
        person, results = _apply(MergedPerson.new("p1"), *order)
        view = person.view(DEFAULT_POLICY)
        assert (view["birth_date"].value, view[NAME].value) == ("1985-03-12", "Lê Thị Hoà")
        assert [c for r in results for c in r.conflicts] == []
