"""The shipped profile (connectors.merge.settings.DEFAULT_TABLES): how each registration and
identity table of the two stores becomes person edits and identity links."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import pytest

from connectors.merge.settings import MergeSettings
from engine.events import Row, Value
from engine.mapping import PersonEdit, PersonMapper, UnusableChange
from tests.unit.changes import change

MAPPER = PersonMapper(MergeSettings().mappings())
PIN_A, PIN_B = "001090000001", "001190000002"


def _edits(
    table: str,
    after: Mapping[str, object],
    *,
    op: str = "c",
    before: Mapping[str, object] | None = None,
    previous_key: Mapping[str, object] | None = None,
) -> list[PersonEdit]:
    store = "population" if table in {"citizen", "pin_history", "birth_notification"} else "civil"
    rows = cast(tuple[Row, Row | None, Row | None], (after, before, previous_key))  # test values
    event = change(
        op,
        after=rows[0],
        before=rows[1],
        previous_key=rows[2],
        store=store,
        schema="public",
        table=table,
        event_id=f"{store}:00000000000000a0:0",
        hlc=(1_750_000_000_000, 0, store),
    )
    return MAPPER.edits_of(event)


def _summary(edits: list[PersonEdit]) -> list[tuple[str, dict[str, Value], str | None]]:
    return [(e.person, dict(e.fields), e.link_to) for e in edits]


def test_a_birth_gives_the_childs_birth_fields_and_reads_an_unknown_sex_as_no_value() -> None:
    act = {"id": 1, "person_id": 7, "pin": PIN_A, "full_name": "Lê Thị Hoa", "sex": "unknown"}
    act |= {"birth_date": "1990", "father": "Lê Văn Nam", "book": "01", "number": "12"}
    assert _summary(_edits("birth_registration", act)) == [
        (
            PIN_A,
            {"full_name": "Lê Thị Hoa", "birth_date": "1990", "father": "Lê Văn Nam"},
            None,
        )
    ]


def test_a_birth_without_a_pin_keys_the_child_by_its_civil_id() -> None:
    act = {"id": 1, "person_id": 7, "pin": None, "full_name": "Lê Thị Hoa", "sex": "female"}
    ((person, fields, _),) = _summary(_edits("birth_registration", act))
    assert person == "civil#7"
    assert fields == {"full_name": "Lê Thị Hoa", "sex": "female"}


def test_a_marriage_sets_both_spouses_married_to_each_other() -> None:
    act = {"id": 3, "spouse_a_id": 7, "spouse_b_id": 8, "married_on": "2020-05-01"}
    act |= {"spouse_a_pin": PIN_A, "spouse_b_pin": PIN_B}
    assert _summary(_edits("marriage_registration", act)) == [
        (PIN_A, {"spouse": PIN_B, "marital_status": "married"}, None),
        (PIN_B, {"spouse": PIN_A, "marital_status": "married"}, None),
    ]


def test_a_death_sets_the_date_of_death() -> None:
    act = {"id": 4, "person_id": 7, "pin": PIN_A, "date_of_death": "2024-12"}
    assert _summary(_edits("death_registration", act)) == [
        (PIN_A, {"date_of_death": "2024-12"}, None)
    ]


def test_a_correction_changes_the_field_it_names() -> None:
    act = {"id": 5, "person_id": 7, "pin": PIN_A, "corrects": "birth_registration"}
    act |= {"field": "birth_date", "old_value": "1990", "new_value": "1990-03-02"}
    assert _summary(_edits("correction", act)) == [(PIN_A, {"birth_date": "1990-03-02"}, None)]


def test_a_reissued_pin_links_the_old_pin_to_the_new() -> None:
    row = {"old_pin": PIN_A, "new_pin": PIN_B, "reason": "sex_redetermination"}
    assert _summary(_edits("pin_history", row)) == [(PIN_A, {}, PIN_B)]


def test_a_citizen_whose_pin_was_updated_is_linked_from_the_old_pin() -> None:
    row = {"pin": PIN_B, "full_name": "Hoàng Thị Em", "sex": "male"}
    event_edits = _edits("citizen", row, previous_key={"pin": PIN_A})
    assert _summary(event_edits) == [
        (PIN_A, {}, PIN_B),
        (PIN_B, {"full_name": "Hoàng Thị Em", "sex": "male"}, None),
    ]
    assert event_edits[1].former_keys == (PIN_A,)


def test_a_pin_issued_for_a_birth_links_its_civil_id_to_the_pin_once() -> None:
    pending = {"civil_person": "civil#7", "full_name": "Lê Thị Hoa", "pin": None}
    issued = {**pending, "pin": PIN_A}
    assert _edits("birth_notification", pending) == []
    assert _summary(_edits("birth_notification", issued, op="u", before=pending)) == [
        ("civil#7", {}, PIN_A)
    ]
    assert _edits("birth_notification", issued, op="u", before=issued) == []


def test_a_civil_person_given_a_pin_links_its_civil_id_and_restates_its_fields() -> None:
    before = {"id": 7, "pin": None, "full_name": "Lê Thị Hoa", "sex": "female"}
    after = {**before, "pin": PIN_A}
    edits = _edits("person", after, op="u", before=before)
    assert _summary(edits) == [
        ("civil#7", {}, PIN_A),
        (PIN_A, {"full_name": "Lê Thị Hoa", "sex": "female"}, None),
    ]
    assert edits[1].former_keys == ("civil#7",)  # known at once: no sink takes it for new


def test_an_act_with_neither_pin_nor_person_is_unusable() -> None:
    with pytest.raises(UnusableChange, match="pin is empty"):
        _edits("death_registration", {"id": 4, "pin": None, "date_of_death": "2024"})


def test_every_mapped_field_and_constant_has_a_policy() -> None:
    settings = MergeSettings()
    policies = settings.policies()
    for mapping in settings.mappings():
        assert set(mapping.columns) | set(mapping.constants) <= set(policies)


@pytest.mark.parametrize("op", ["c", "r"])
def test_a_new_civil_person_with_a_pin_links_its_civil_id_so_pinless_acts_reach_it(
    op: str,
) -> None:
    row = {"id": 9, "pin": PIN_A, "full_name": "Lê Thị Hoa"}
    edits = _edits("person", row, op=op)
    assert _summary(edits) == [("civil#9", {}, PIN_A), (PIN_A, {"full_name": "Lê Thị Hoa"}, None)]
    assert edits[1].former_keys == ("civil#9",)
    act = {"id": 1, "person_id": 9, "pin": None, "date_of_death": "2024"}
    assert _summary(_edits("death_registration", act)) == [
        ("civil#9", {"date_of_death": "2024"}, None)
    ]
