"""Identity links: a person moved to a new key (a re-issued PIN, a PIN issued for a birth)
keeps everything known under the old key, whatever order the edits and the link arrive in,
and the old key forwards; the new key remembers the old among its former keys."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from engine.events import Hlc, Value
from engine.mapping import PersonEdit
from engine.person import MergedPerson, link, merge
from engine.policy import CIVIL, DEFAULT_POLICY, POPULATION

OLD, NEW = "civil#7", "001190000002"


def _edit(person: str, origin: str, wall: int, fields: dict[str, Value]) -> PersonEdit:
    return PersonEdit(person, origin, f"{origin}:{wall}", Hlc(wall, 0, origin), fields)


LINK = replace(_edit(OLD, POPULATION, 5, {}), link_to=NEW)
OLD_EDITS = [
    _edit(OLD, CIVIL, 1, {"full_name": "Lê Thị Hoa", "sex": "female"}),
    _edit(OLD, CIVIL, 3, {"full_name": "Lê Thị Hoà", "birth_date": "2025"}),
    _edit(OLD, POPULATION, 4, {"full_name": "Lê Thị Hồng"}),  # held: civil is the authority
]
NEW_EDITS = [_edit(NEW, POPULATION, 6, {"religion": "Không", "full_name": "Lê Thị Hoa"})]


def _run(events: list[PersonEdit]) -> dict[str, MergedPerson]:
    """Every event in order, as the merger does: links move, moved keys forward."""
    people: dict[str, MergedPerson] = {}
    queue = list(events)
    while queue:
        edit = queue.pop(0)
        person = people.get(edit.person) or MergedPerson.new(edit.person)
        if person.successor is not None:
            queue.insert(0, replace(edit, person=person.successor))
        elif edit.link_to is not None:
            result = link(person, edit)
            people[edit.person] = result.person
            queue[:0] = result.forwarded
        else:
            people[edit.person] = merge(person, edit, DEFAULT_POLICY).person
    return people


def _view(person: MergedPerson) -> dict[str, Value]:
    return {name: o.value for name, o in person.view(DEFAULT_POLICY).items()}


def test_a_link_moves_every_field_and_its_provenance_to_the_new_key() -> None:
    people = _run([*OLD_EDITS, LINK])
    moved = people[NEW]
    assert _view(moved) == {"full_name": "Lê Thị Hoà", "sex": "female", "birth_date": "2025"}
    assert moved.former_keys == (OLD,)
    assert moved.state.fields["full_name"].latest[POPULATION].value == "Lê Thị Hồng"
    assert set(moved.open_conflicts) == {"full_name"}  # the held edit is held again here
    stub = people[OLD]
    assert (stub.successor, stub.state.fields) == (NEW, {})


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_new_key_ends_the_same_whatever_order_link_and_edits_arrive_in(
    order: tuple[int, ...],
) -> None:
    groups = [OLD_EDITS[:2], [LINK, OLD_EDITS[2]], NEW_EDITS]
    events = [edit for i in order for edit in groups[i]]
    expected = _run([*OLD_EDITS, *NEW_EDITS, LINK])[NEW]
    moved = _run(events)[NEW]
    assert _view(moved) == _view(expected)
    assert moved.state == expected.state
    assert moved.former_keys == (OLD,)


def test_an_edit_of_the_old_key_after_the_link_reaches_the_new_key() -> None:
    late = _edit(OLD, CIVIL, 9, {"date_of_death": "2026"})
    people = _run([*OLD_EDITS, LINK, late])
    assert _view(people[NEW])["date_of_death"] == "2026"
    assert "date_of_death" not in people[OLD].state.fields


def test_a_second_link_of_a_moved_person_moves_nothing() -> None:
    moved = link(MergedPerson.new(OLD), LINK).person
    again = link(moved, replace(LINK, link_to="001190000003"))
    assert (again.person, again.forwarded, again.conflicts) == (moved, [], [])


def test_open_conflicts_of_the_old_key_close_as_superseded_when_it_moves() -> None:
    person = MergedPerson.new(OLD)
    for edit in OLD_EDITS:
        person = merge(person, edit, DEFAULT_POLICY).person
    result = link(person, LINK)
    assert [(c.field, c.decision) for c in result.conflicts] == [("full_name", "superseded")]


def test_former_keys_change_the_version_once() -> None:
    person = MergedPerson.new(NEW)
    marker = replace(_edit(NEW, POPULATION, 5, {}), former_keys=(OLD,))
    first = merge(person, marker, DEFAULT_POLICY)
    second = merge(first.person, marker, DEFAULT_POLICY)
    assert (first.changed, first.person.version, first.person.former_keys) == (True, 1, (OLD,))
    assert (second.changed, second.person.version) == (False, 1)


def test_an_act_or_a_row_of_the_person_is_news_once() -> None:
    act = _edit(OLD, CIVIL, 1, {"full_name": "Lê Thị Hoa"})
    row = replace(act, event_id="civil:2", person_row=True)
    first = merge(MergedPerson.new(OLD), act, DEFAULT_POLICY)
    second = merge(first.person, row, DEFAULT_POLICY)
    third = merge(second.person, row, DEFAULT_POLICY)  # redelivered
    assert (first.person.has_row, second.person.has_row) == (False, True)
    assert (second.changed, third.changed) == (True, False)
