"""The merge step (engine.step) with an in-memory ``People``: what it merges, what it leaves
for another merger, what it refuses and why, and what civsync.person gets. A property:
however the people are split between two mergers, the edits one leaves for the other end
in the same states as one merger owning everybody."""

from __future__ import annotations

from collections.abc import Collection

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.merge.settings import MergeSettings
from connectors.place_data import pre_2025_province_codes
from engine.events import Change, Hlc, Value
from engine.mapping import PersonEdit, PersonMapper
from engine.person import MergedPerson
from engine.step import Effects, Finding, MergeStep, Publish
from tests.unit.changes import change

PROFILE = MergeSettings()
STEP = MergeStep(
    PersonMapper(PROFILE.mappings()),
    PROFILE.policies(),
    PROFILE.required,
    pre_2025_province_codes(),
)
PIN_A, PIN_B, PIN_C = "001090000001", "001190000002", "079203001234"


class People:
    """The in-memory port: the people of ``owned`` (everybody if None)."""

    def __init__(self, owned: Collection[str] | None = None) -> None:
        self.owned = owned
        self.people: dict[str, MergedPerson] = {}
        self.changed: dict[str, bool] = {}

    def owns(self, person: str) -> bool:
        return self.owned is None or person in self.owned

    def get(self, person: str) -> MergedPerson | None:
        return self.people.get(person)

    def put(self, merged: MergedPerson, *, changed: bool) -> None:
        self.people[merged.state.person] = merged
        self.changed[merged.state.person] = self.changed.get(merged.state.person, False) or changed


def _citizen(pin: str, values: dict[str, Value], *, seq: int = 0) -> Change:
    after: dict[str, Value] = {"pin": pin, **values}
    return change(
        "c",
        after=after,
        store="population",
        schema="public",
        table="citizen",
        event_id=f"population:00000000000000a0:{seq}",
        hlc=(1_750_000_000_000 + seq, 0, "population"),
    )


def _run(people: People, *changes: Change) -> Effects:
    effects = Effects()
    for item in changes:
        STEP.change(item, people, effects)
    return effects


def test_a_change_of_a_person_this_merger_owns_is_merged() -> None:
    people = People()
    effects = _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    person = people.people[PIN_A]
    assert person.view(STEP.policies)["permanent_residence"].value == "Hà Nội"
    assert people.changed == {PIN_A: True}
    assert (effects.elsewhere, effects.findings, dict(effects.merged)) == (
        [],
        [],
        {"population": 1},
    )


def test_a_change_of_a_person_another_merger_owns_is_left_for_it_unmerged() -> None:
    people = People(owned=set())
    effects = _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    assert people.people == {}
    (edit,) = effects.elsewhere
    assert (edit.person, dict(edit.fields)) == (PIN_A, {"permanent_residence": "Hà Nội"})


def test_a_malformed_pin_is_a_finding_and_nothing_is_merged() -> None:
    people = People()
    bad = _citizen("12345", {"permanent_residence": "Hà Nội"})
    effects = _run(people, bad)
    (finding,) = effects.findings
    assert finding.refused is bad
    assert finding.reason.startswith("pin.")
    assert people.people == {}


def test_an_edit_of_a_field_without_a_policy_is_a_finding() -> None:
    people = People()
    edit = PersonEdit(PIN_A, "civil", "e1", _hlc(1), {"favourite_colour": "blue"})
    effects = Effects()
    STEP.edit(edit, people, effects)
    (finding,) = effects.findings
    assert (finding.reason, finding.refused) == ("merge.unknown_field", edit)
    assert "favourite_colour" in finding.detail


def test_a_link_moves_the_person_and_forwards_what_is_known() -> None:
    people = People(owned={PIN_A})  # the new key is another merger's
    _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    effects = Effects()
    STEP.edit(PersonEdit(PIN_A, "population", "l1", _hlc(5), {}, link_to=PIN_B), people, effects)
    assert people.people[PIN_A].successor == PIN_B
    assert {e.person for e in effects.elsewhere} == {PIN_B}
    forwarded = [e for e in effects.elsewhere if e.fields]
    assert forwarded[0].fields == {"permanent_residence": "Hà Nội"}
    assert any(e.former_keys == (PIN_A,) for e in effects.elsewhere)
    assert effects.links == 1
    later = Effects()  # an edit of the old key follows the person
    STEP.edit(PersonEdit(PIN_A, "civil", "e9", _hlc(9), {"full_name": "An"}), people, later)
    assert [e.person for e in later.elsewhere] == [PIN_B]


def test_a_link_back_to_a_former_key_is_a_cycle() -> None:
    people = People()
    _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    effects = Effects()
    STEP.edit(PersonEdit(PIN_A, "population", "l1", _hlc(5), {}, link_to=PIN_A), people, effects)
    assert [f.reason for f in effects.findings] == ["identity.cycle"]


def test_the_same_link_recorded_twice_moves_the_person_once_and_is_no_cycle() -> None:
    """A re-issue arrives as the citizen's new PIN and as its PIN-history row: two links
    from the old key to the new one. The second is done already, not a cycle."""
    people = People()
    _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    first, again = Effects(), Effects()
    STEP.edit(PersonEdit(PIN_A, "population", "l1", _hlc(5), {}, link_to=PIN_B), people, first)
    STEP.edit(PersonEdit(PIN_A, "population", "l2", _hlc(6), {}, link_to=PIN_B), people, again)
    assert first.links == 1
    assert (again.findings, again.links, again.elsewhere) == ([], 0, [])
    assert people.people[PIN_B].former_keys == (PIN_A,)


def test_what_civsync_person_gets() -> None:
    people = People()
    _run(people, _citizen(PIN_A, {"permanent_residence": "Hà Nội"}))
    assert STEP.publication(people.people[PIN_A]) is Publish.RECORD
    STEP.edit(PersonEdit(PIN_A, "population", "l1", _hlc(5), {}, link_to=PIN_B), people, Effects())
    assert STEP.publication(people.people[PIN_A]) is Publish.TOMBSTONE
    # a birth act without a PIN, its child not named yet: it waits silently
    act = PersonEdit("civil#7", "civil", "b1", _hlc(6), {"sex": "female"})
    STEP.edit(act, people, Effects())
    assert STEP.publication(people.people["civil#7"]) is Publish.WAIT
    # the same, from the person's own row: quarantined as incomplete, naming the fields
    row = PersonEdit("civil#8", "civil", "r1", _hlc(7), {"sex": "female"}, person_row=True)
    STEP.edit(row, people, Effects())
    finding = STEP.publication(people.people["civil#8"])
    assert isinstance(finding, Finding)
    assert finding.reason == "merge.incomplete"
    assert "full_name, birth_date" in finding.detail


def _hlc(wall: int) -> Hlc:
    return Hlc(1_750_000_000_000 + wall, 0, "test")


_fields = st.fixed_dictionaries(
    {},
    optional={
        "permanent_residence": st.sampled_from(["Hà Nội", "Huế", "Cần Thơ"]),
        "religion": st.sampled_from(["Phật giáo", "Không", None]),
        "occupation": st.sampled_from(["giáo viên", "nông dân"]),
    },
)
_changes = st.lists(
    st.tuples(st.sampled_from([PIN_A, PIN_B, PIN_C]), _fields), min_size=1, max_size=12
)


@settings(max_examples=100)
@given(_changes, st.sets(st.sampled_from([PIN_A, PIN_B, PIN_C])))
def test_two_mergers_splitting_the_people_end_as_one(
    history: list[tuple[str, dict[str, Value]]], owned_by_first: set[str]
) -> None:
    changes = [_citizen(pin, values, seq=i) for i, (pin, values) in enumerate(history)]
    alone = People()
    _run(alone, *changes)
    first = People(owned=owned_by_first)
    second = People(owned={PIN_A, PIN_B, PIN_C} - owned_by_first)
    left = _run(first, *changes).elsewhere
    forwarded = Effects()
    for edit in left:
        STEP.edit(edit, second, forwarded)
    assert forwarded.elsewhere == []
    assert {**first.people, **second.people} == alone.people
