"""The merge core, property by property: order, duplicates and replays never change the
result, and each policy decides as the product contract says."""

from __future__ import annotations

import random
from dataclasses import replace
from functools import reduce

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import dates
from engine.events import Hlc
from engine.merge import FieldEdit, FieldState, Outcome, PersonState, decide
from engine.policy import CIVIL, POPULATION, STEWARD, FieldPolicy, Rule

POLICIES = [
    FieldPolicy(Rule.AUTHORITY, CIVIL),
    FieldPolicy(Rule.AUTHORITY, POPULATION),
    FieldPolicy(Rule.LWW),
    FieldPolicy(Rule.MANUAL),
]

edits = st.builds(
    FieldEdit,
    field=st.sampled_from(["full_name", "current_residence"]),
    value=st.sampled_from(["Lan", "Lân", "Lâm", None]),
    origin=st.sampled_from([CIVIL, POPULATION, STEWARD]),
    hlc=st.builds(
        Hlc, st.integers(0, 5), st.integers(0, 3), st.sampled_from(["civil", "population", "m1"])
    ),
    event_id=st.text("abc", min_size=1, max_size=3),
    learned=st.booleans(),
).map(lambda e: replace(e, learned=False) if e.origin == STEWARD else e)  # stewards decide


def _merge(history: list[FieldEdit], policy: FieldPolicy) -> PersonState:
    return reduce(lambda state, edit: state.apply(edit, policy)[0], history, PersonState("p1"))


@settings(max_examples=300)
@given(st.lists(edits, max_size=12), st.sampled_from(POLICIES), st.randoms())
def test_any_order_with_duplicates_and_replays_converges(
    history: list[FieldEdit], policy: FieldPolicy, rng: random.Random
) -> None:
    delivered = history + rng.sample(history, k=len(history) // 2)  # redeliveries
    rng.shuffle(delivered)
    replayed = delivered + history  # an auditor's full replay on top
    assert _merge(replayed, policy) == _merge(history, policy)


@given(st.lists(edits, min_size=1, max_size=12), st.sampled_from(POLICIES))
def test_replaying_a_merged_history_raises_no_new_conflicts(
    history: list[FieldEdit], policy: FieldPolicy
) -> None:
    state = _merge(history, policy)
    assert all(state.apply(edit, policy) == (state, []) for edit in history)


@given(st.lists(edits, min_size=1, max_size=12))
def test_lww_takes_the_highest_ranked_edit(history: list[FieldEdit]) -> None:
    policy = FieldPolicy(Rule.LWW)
    state = _merge(history, policy)
    for name in {e.field for e in history}:
        newest = max((e for e in history if e.field == name), key=lambda e: e.rank)
        assert state.outcome(name, policy).provenance == newest


@given(st.lists(edits, min_size=1, max_size=12), st.sampled_from([CIVIL, POPULATION]))
def test_authority_keeps_its_side_and_holds_newer_differing_edits(
    history: list[FieldEdit], authority: str
) -> None:
    policy = FieldPolicy(Rule.AUTHORITY, authority)
    state = _merge(history, policy)
    for name in {e.field for e in history}:
        mine = [e for e in history if e.field == name and e.origin in (authority, STEWARD)]
        outcome = state.outcome(name, policy)
        if not mine:
            continue
        standing = max(mine, key=lambda e: e.rank)
        assert outcome.provenance == standing
        if outcome.held is not None:
            assert outcome.held.origin not in (authority, STEWARD)
            assert outcome.held.rank > standing.rank
            assert outcome.held.value != standing.value


@given(st.lists(edits, min_size=1, max_size=12), st.sampled_from(POLICIES))
def test_a_learned_value_never_displaces_an_edit(
    history: list[FieldEdit], policy: FieldPolicy
) -> None:
    """Issue 17: a value read from an unchanged column of a row image fills a field; it
    never stands where an edit the rule could choose exists."""
    state = _merge(history, policy)
    choosable = {CIVIL, POPULATION, STEWARD}
    if policy.rule is Rule.AUTHORITY:
        choosable = {policy.authority or CIVIL, STEWARD}
    for name in {e.field for e in history}:
        standing = state.outcome(name, policy).provenance
        assert standing is not None
        if any(e.field == name and not e.learned and e.origin in choosable for e in history):
            assert not standing.learned


def _edit(origin: str, value: str, wall: int, event_id: str) -> FieldEdit:
    return FieldEdit("full_name", value, origin, Hlc(wall, 0, origin), event_id)


def test_a_population_edit_of_a_civil_field_is_held_then_resolved_by_a_steward() -> None:
    policy = FieldPolicy(Rule.AUTHORITY, CIVIL)
    state, conflicts = PersonState("p1").apply(_edit(CIVIL, "Nguyễn Văn An", 1, "c1"), policy)
    assert conflicts == []
    state, conflicts = state.apply(_edit(POPULATION, "Nguyễn Văn Ân", 2, "p1"), policy)
    assert state.outcome("full_name", policy).value == "Nguyễn Văn An"
    assert [(c.decision, c.standing.event_id, c.contested.event_id) for c in conflicts] == [
        ("held", "c1", "p1")
    ]
    state, conflicts = state.apply(_edit(STEWARD, "Nguyễn Văn Ân", 3, "s1"), policy)
    outcome = state.outcome("full_name", policy)
    assert (outcome.value, outcome.held) == ("Nguyễn Văn Ân", None)


def test_manual_holds_every_differing_change() -> None:
    policy = FieldPolicy(Rule.MANUAL)
    state, _ = PersonState("p1").apply(_edit(CIVIL, "Kinh", 1, "c1"), policy)
    state, conflicts = state.apply(_edit(CIVIL, "Tày", 2, "c2"), policy)
    outcome = state.outcome("full_name", policy)
    assert (outcome.value, outcome.held and outcome.held.event_id) == ("Kinh", "c2")
    assert conflicts == []  # same origin: a change to hold, not a disagreement between stores


def test_a_field_without_edits_has_no_value() -> None:
    assert decide(FieldState(), FieldPolicy(Rule.LWW)) == Outcome(None, None)


# Issue 13: precision-aware dates and the normal form.

dated = st.builds(
    FieldEdit,
    field=st.just("birth_date"),
    value=st.sampled_from(["1985", "1985-03", "1985-03-12", "1985-04", "1986", None]),
    origin=st.sampled_from([CIVIL, POPULATION, STEWARD]),
    hlc=st.builds(Hlc, st.integers(0, 5), st.integers(0, 3), st.sampled_from(["civil", "m1"])),
    event_id=st.text("abc", min_size=1, max_size=3),
    learned=st.booleans(),
).map(lambda e: replace(e, learned=False) if e.origin == STEWARD else e)


@settings(max_examples=300)
@given(st.lists(dated, max_size=10), st.sampled_from(POLICIES), st.randoms())
def test_dates_converge_in_any_order_with_duplicates(
    history: list[FieldEdit], policy: FieldPolicy, rng: random.Random
) -> None:
    delivered = history + rng.sample(history, k=len(history) // 2)
    rng.shuffle(delivered)
    state = _merge(delivered + history, policy)
    assert state == _merge(history, policy)
    assert all(state.apply(edit, policy) == (state, []) for edit in history)


@given(st.lists(dated, min_size=1, max_size=10), st.sampled_from(POLICIES))
def test_a_date_never_stands_over_a_more_precise_one_it_agrees_with(
    history: list[FieldEdit], policy: FieldPolicy
) -> None:
    state = _merge(history, policy)
    outcome = state.outcome("birth_date", policy)
    for edit in state.fields["birth_date"].latest.values():
        assert not dates.refines(edit.value, outcome.value)


def _dated(origin: str, value: str, wall: int) -> FieldEdit:
    return FieldEdit("birth_date", value, origin, Hlc(wall, 0, origin), f"{origin}:{wall}")


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(("civil_at", "population_at"), [(1, 2), (2, 1)])
def test_a_year_only_date_never_replaces_the_full_date_it_agrees_with(
    policy: FieldPolicy, civil_at: int, population_at: int
) -> None:
    legacy, full = _dated(CIVIL, "1985", civil_at), _dated(POPULATION, "1985-03-12", population_at)
    state, first = PersonState("p1").apply(legacy, policy)
    state, second = state.apply(full, policy)
    outcome = state.outcome("birth_date", policy)
    assert (outcome.value, outcome.provenance, outcome.held) == ("1985-03-12", full, None)
    assert first + second == []  # agreeing dates are no conflict


@pytest.mark.parametrize(("civil_at", "decision"), [(1, "held"), (3, "kept")])
def test_a_date_that_disagrees_is_a_conflict_as_before(civil_at: int, decision: str) -> None:
    policy = FieldPolicy(Rule.AUTHORITY, CIVIL)
    state, _ = PersonState("p1").apply(_dated(CIVIL, "1986", civil_at), policy)
    state, conflicts = state.apply(_dated(POPULATION, "1985-03-12", 2), policy)
    assert state.outcome("birth_date", policy).value == "1986"
    assert [c.decision for c in conflicts] == [decision]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_value_equal_in_normal_form_is_no_conflict_and_stands_as_recorded(
    policy: FieldPolicy,
) -> None:
    state, _ = PersonState("p1").apply(_edit(CIVIL, "Lê Thị Thuý Hoà", 1, "c1"), policy)
    state, conflicts = state.apply(_edit(POPULATION, "Lê  Thị Thúy Hòa", 2, "p2"), policy)
    assert conflicts == []
    outcome = state.outcome("full_name", policy)
    assert outcome.held is None
    assert outcome.value in {"Lê Thị Thuý Hoà", "Lê  Thị Thúy Hòa"}  # one recorded, untouched
    state, conflicts = state.apply(_edit(POPULATION, "Lê Thị Thủy Hòa", 3, "p3"), policy)
    assert [c.decision for c in conflicts] == [
        "kept" if policy.rule is Rule.LWW or policy.authority == POPULATION else "held"
    ]
