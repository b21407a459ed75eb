"""From captured row changes to person edits: only the mapped fields a change set, with the
event's clock, id and store; unusable changes are refused with a quarantine reason."""

from __future__ import annotations

import pytest

from engine.events import Change, Hlc, Value
from engine.mapping import MAX_VALUE_BYTES, PersonEdit, PersonMapper, TableMapping, UnusableChange
from engine.merge import FieldEdit
from tests.unit.changes import change

BIRTHS = TableMapping(
    store="civil",
    table="civil.birth_registration",
    person_column="person_id",
    columns={"full_name": "name", "birth_date": "dob", "sex": "sex"},
)
RESIDENTS = TableMapping(
    store="population",
    table="population.resident",
    person_column="pin",
    columns={"pin": "pin", "religion": "religion_name", "current_residence": "address"},
)
MAPPER = PersonMapper([BIRTHS, RESIDENTS])


_event = change


ROW: dict[str, Value] = {
    "id": 7,
    "person_id": "P-001",
    "name": "Nguyễn Văn An",
    "dob": "1990-05-17",
    "sex": "M",
    "registrar": "Phường Bến Nghé",
}


def _fields(event: Change) -> dict[str, Value]:
    (edit,) = MAPPER.edits_of(event)
    return dict(edit.fields)


@pytest.mark.parametrize("op", ["c", "r"])
def test_a_new_or_snapshot_row_gives_only_its_non_null_mapped_columns(op: str) -> None:
    after = {**ROW, "dob": None}
    assert _fields(_event(op, after=after)) == {"full_name": "Nguyễn Văn An", "sex": "M"}


def test_a_new_row_leaves_out_mapped_columns_it_does_not_carry() -> None:
    after = {k: v for k, v in ROW.items() if k != "sex"}
    assert _fields(_event("c", after=after)) == {
        "full_name": "Nguyễn Văn An",
        "birth_date": "1990-05-17",
    }


def test_an_update_gives_only_the_mapped_columns_whose_value_changed() -> None:
    before = {**ROW, "sex": None}
    after = {**ROW, "name": "Nguyễn Văn Ân", "dob": None, "sex": "F", "registrar": "Quận 3"}
    assert _fields(_event("u", before=before, after=after)) == {
        "full_name": "Nguyễn Văn Ân",
        "birth_date": None,  # cleared: a change to NULL is news when the old row says so
        "sex": "F",
    }


def test_an_update_leaves_out_a_column_the_log_did_not_carry() -> None:
    after = {k: v for k, v in ROW.items() if k != "name"}  # an unchanged TOAST-ed value
    after["sex"] = "F"
    assert _fields(_event("u", before=ROW, after=after)) == {"sex": "F"}


def test_an_update_without_before_restates_every_mapped_column_present_nulls_included() -> None:
    after = {k: v for k, v in ROW.items() if k != "sex"}
    after["dob"] = None  # without the old row, a NULL may be a change: it is restated
    assert _fields(_event("u", before=None, after=after)) == {
        "full_name": "Nguyễn Văn An",
        "birth_date": None,
    }


def test_an_update_moving_the_row_to_another_person_links_them_and_restates_its_fields() -> None:
    before = {**ROW, "dob": None}
    after = {**before, "person_id": "P-002"}  # nothing but the person changed
    link, edit = MAPPER.edits_of(_event("u", before=before, after=after))
    assert (link.person, link.link_to, dict(link.fields)) == ("P-001", "P-002", {})
    assert edit.person == "P-002"
    assert dict(edit.fields) == {"full_name": "Nguyễn Văn An", "sex": "M"}


def test_an_update_of_only_unmapped_columns_sets_nothing_and_teaches_the_row() -> None:
    after = {**ROW, "registrar": "Quận 3"}
    (edit,) = MAPPER.edits_of(_event("u", before=ROW, after=after))
    assert dict(edit.fields) == {}
    assert dict(edit.learned) == {
        "full_name": "Nguyễn Văn An",
        "birth_date": "1990-05-17",
        "sex": "M",
    }
    assert all(e.learned for e in edit.field_edits())


def test_an_update_teaches_the_unchanged_columns_of_its_full_row_image() -> None:
    """Issue 17: a person whose snapshot row an update superseded is known in full from the
    update's after-image; only the changed column is an edit, NULL columns teach nothing."""
    before = {**ROW, "sex": None}
    after = {**before, "name": "Nguyễn Văn Anh"}
    (edit,) = MAPPER.edits_of(_event("u", before=before, after=after))
    assert dict(edit.fields) == {"full_name": "Nguyễn Văn Anh"}
    assert dict(edit.learned) == {"birth_date": "1990-05-17"}
    assert [(e.field, e.learned) for e in edit.field_edits()] == [
        ("full_name", False),
        ("birth_date", True),
    ]


def test_a_create_teaches_nothing_as_every_value_is_an_edit() -> None:
    (edit,) = MAPPER.edits_of(_event("c", after=ROW))
    assert dict(edit.learned) == {}


def test_a_row_without_any_non_null_mapped_column_gives_no_edit() -> None:
    after: dict[str, Value] = {"id": 8, "person_id": "P-003", "name": None, "dob": None}
    assert MAPPER.edits_of(_event("c", after=after)) == []


def test_a_delete_gives_no_edit() -> None:
    assert MAPPER.edits_of(_event("d", before=ROW, after=None)) == []


@pytest.mark.parametrize(
    ("store", "schema", "table"),
    [
        ("civil", "civil", "death_registration"),  # another table of a mapped store
        ("population", "civil", "birth_registration"),  # the mapped table, another store
        ("civil", "public", "birth_registration"),  # the mapped table, another schema
    ],
)
def test_a_change_of_an_unmapped_table_is_unusable(store: str, schema: str, table: str) -> None:
    event = _event("c", after=ROW, store=store, schema=schema, table=table)
    with pytest.raises(UnusableChange) as raised:
        MAPPER.edits_of(event)
    assert raised.value.reason == "merge.unmapped_table"
    assert f"{schema}.{table}" in raised.value.detail


@pytest.mark.parametrize(
    "after",
    [
        {**ROW, "person_id": None},
        {**ROW, "person_id": ""},
        {k: v for k, v in ROW.items() if k != "person_id"},
    ],
    ids=["null", "empty", "absent"],
)
def test_a_row_without_a_person_key_is_unusable(after: dict[str, Value]) -> None:
    with pytest.raises(UnusableChange) as raised:
        MAPPER.edits_of(_event("c", after=after))
    assert raised.value.reason == "merge.no_person_key"
    assert "person_id" in raised.value.detail
    assert str(raised.value) == raised.value.detail


def test_the_edit_carries_the_events_clock_id_and_store() -> None:
    after: dict[str, Value] = {
        "id": 1,
        "pin": 79203001234,
        "religion_name": "Phật giáo",
        "address": None,
    }
    event = _event(
        "r",
        after=after,
        store="population",
        schema="population",
        table="resident",
        event_id="population:00000000000000a0:3",
        hlc=(1_717_000_000_123, 3, "population"),
    )
    assert MAPPER.edits_of(event) == [
        PersonEdit(
            person="79203001234",  # the person key is always text
            origin="population",
            event_id="population:00000000000000a0:3",
            hlc=Hlc(1_717_000_000_123, 3, "population"),
            fields={"pin": 79203001234, "religion": "Phật giáo"},
            person_row=True,  # the table sinks write: the person's own row
        )
    ]


def test_field_edits_give_one_edit_per_field_in_name_order() -> None:
    hlc = Hlc(5, 1, "civil")
    edit = PersonEdit("P-001", "civil", "e1", hlc, {"sex": "F", "birth_date": None, "pin": 7})
    assert edit.field_edits() == [
        FieldEdit("birth_date", None, "civil", hlc, "e1"),
        FieldEdit("pin", 7, "civil", hlc, "e1"),
        FieldEdit("sex", "F", "civil", hlc, "e1"),
    ]


@pytest.mark.parametrize("dob", ["2023-02-29", "2023-04-31", "1942-13", "1990-05-17\n", "soon"])
def test_a_date_that_is_no_calendar_date_is_unusable_naming_the_field(dob: str) -> None:
    with pytest.raises(UnusableChange) as refused:
        MAPPER.edits_of(_event("c", after={**ROW, "dob": dob}))
    assert refused.value.reason == "date.invalid"
    assert "birth_date" in refused.value.detail
    assert dob.strip() not in refused.value.detail
    assert "Nguyễn" not in refused.value.detail


@pytest.mark.parametrize("dob", ["1990", "1990-05", "2024-02-29"])
def test_partial_and_leap_dates_are_usable(dob: str) -> None:
    assert _fields(_event("c", after={**ROW, "dob": dob}))["birth_date"] == dob


def test_a_learned_date_that_is_no_calendar_date_is_left_out() -> None:
    before = {**ROW, "dob": "2023-02-29"}  # written before calendar dates were checked
    after = {**before, "name": "Nguyễn Văn Anh"}
    (edit,) = MAPPER.edits_of(_event("u", before=before, after=after))
    assert dict(edit.fields) == {"full_name": "Nguyễn Văn Anh"}
    assert "birth_date" not in edit.learned


CORRECTIONS = TableMapping(  # a correction act: the field it corrects, and the new value
    store="civil",
    table="public.correction",
    person_column="pin",
    field_column="field",
    value_column="new_value",
)


def test_a_correction_to_an_impossible_date_is_unusable() -> None:
    row: dict[str, Value] = {
        "pin": "001090000001",
        "field": "date_of_death",
        "new_value": "2023-04-31",
    }
    event = change("c", after=row, store="civil", schema="public", table="correction")
    with pytest.raises(UnusableChange) as refused:
        PersonMapper([CORRECTIONS]).edits_of(event)
    assert (refused.value.reason, "date_of_death" in refused.value.detail) == ("date.invalid", True)


@pytest.mark.parametrize("field", ["", "   ", None])
def test_a_correction_naming_no_field_is_unusable_not_dropped(field: str | None) -> None:
    row: dict[str, Value] = {"pin": "001090000001", "field": field, "new_value": "Nguyễn Văn An"}
    event = change("c", after=row, store="civil", schema="public", table="correction")
    with pytest.raises(UnusableChange) as refused:
        PersonMapper([CORRECTIONS]).edits_of(event)
    assert refused.value.reason == "correction.no_field"


def test_a_text_larger_than_civsync_carries_is_unusable_naming_field_and_size() -> None:
    name = "Nguyễn " * (MAX_VALUE_BYTES // 7)  # 9 bytes each in UTF-8: past the limit
    with pytest.raises(UnusableChange) as refused:
        MAPPER.edits_of(_event("c", after={**ROW, "name": name}))
    assert refused.value.reason == "value.too_large"
    assert "full_name" in refused.value.detail
    assert "Nguyễn" not in refused.value.detail
    (edit,) = MAPPER.edits_of(_event("c", after={**ROW, "name": "x" * MAX_VALUE_BYTES}))
    assert len(str(edit.fields["full_name"])) == MAX_VALUE_BYTES  # at the limit: taken
