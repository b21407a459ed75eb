"""The merger's records: the Avro state changelog gives back exactly the person it stored
(and states an earlier release wrote as JSON still load), the Avro records match their
schemas, and a person's edits partition is fixed."""

from __future__ import annotations

import io
import json
import unicodedata
from dataclasses import replace
from typing import Any

import fastavro
import fastavro.validation
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.merge.records import (
    conflict_to_avro,
    edit_from_avro,
    edit_to_avro,
    history_step,
    legacy_state_from_json,
    merged_values,
    person_to_avro,
    state_from_avro,
    state_to_avro,
)
from engine.events import Hlc, Value
from engine.mapping import PersonEdit, person_partition
from engine.merge import Conflict
from engine.person import MergedPerson, merge
from engine.policy import CIVIL, DEFAULT_POLICY, POPULATION, STEWARD
from schemas import load


def _schema(name: str) -> Any:
    return fastavro.parse_schema(json.loads(load(name)))


PERSON, CONFLICT, PERSON_EDIT = _schema("person"), _schema("conflict"), _schema("person_edit")
PERSON_STATE = _schema("person_state")


def _through_changelog(person: MergedPerson) -> MergedPerson:
    """``person`` written to the state changelog and read back, through Avro bytes."""
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PERSON_STATE, state_to_avro(person))
    buffer.seek(0)
    return state_from_avro(fastavro.schemaless_reader(buffer, PERSON_STATE, None))  # type: ignore[arg-type]


def _edit(origin: str, wall: int, event_id: str, fields: dict[str, Value]) -> PersonEdit:
    return PersonEdit("079203001234", origin, event_id, Hlc(wall, 1, origin), fields)


def _merge_all(edits: list[PersonEdit]) -> tuple[MergedPerson, list[Conflict]]:
    person, conflicts = MergedPerson.new("079203001234"), []
    for edit in edits:
        result = merge(person, edit, DEFAULT_POLICY)
        person = result.person
        conflicts += result.conflicts
    return person, conflicts


HISTORY = [
    _edit(CIVIL, 1, "c1", {"full_name": "Nguyễn Thị Ánh", "sex": "F", "household": 7}),
    _edit(POPULATION, 2, "p2", {"full_name": "Nguyễn Thị Anh", "religion": "Phật giáo"}),
    _edit(POPULATION, 3, "p3", {"household": 42, "id_cards": 2.5, "pin": True}),  # 7 kept
    _edit(CIVIL, 4, "c4", {"sex": "Nữ", "date_of_death": None}),
]


def _values(person: MergedPerson) -> list[tuple[type, Value]]:
    """Every value in the state with its type: True == 1 == 1.0, but not on the wire."""
    found: list[tuple[type, Value]] = []
    for _, state in sorted(person.state.fields.items()):
        edits = [edit for _, edit in sorted(state.latest.items())] + [state.earliest]
        found += [(type(e.value), e.value) for e in edits if e is not None]
    return found


def test_the_state_changelog_gives_back_the_person_with_its_open_conflicts() -> None:
    person, _ = _merge_all(HISTORY)
    assert set(person.open_conflicts) == {"full_name"}
    restored = _through_changelog(person)
    assert restored == person
    assert _values(restored) == _values(person)


values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.sampled_from(["Nguyễn Văn Ân", "Đặng Thị Hương", "Phường Bến Nghé", ""]),
    st.text(max_size=8).map(lambda text: unicodedata.normalize("NFC", text)),
)

edits = st.builds(
    PersonEdit,
    person=st.just("079203001234"),
    origin=st.sampled_from([CIVIL, POPULATION, STEWARD]),
    event_id=st.text("abc", min_size=1, max_size=3),
    hlc=st.builds(Hlc, st.integers(0, 5), st.integers(0, 3), st.sampled_from([CIVIL, "m1"])),
    fields=st.dictionaries(
        st.sampled_from(["full_name", "religion", "date_of_death"]), values, min_size=1
    ),
    learned=st.dictionaries(st.sampled_from(["full_name", "religion", "sex"]), values),
)


@settings(max_examples=200)
@given(st.lists(edits, max_size=8))
def test_any_state_survives_the_changelog(history: list[PersonEdit]) -> None:
    person, _ = _merge_all(history)
    restored = _through_changelog(person)
    assert restored == person
    assert _values(restored) == _values(person)


def test_the_changelog_keeps_vietnamese_text_exact() -> None:
    names = [unicodedata.normalize("NFC", n) for n in ("Trần Thị Thủy", "Đoàn Quốc Việt")]
    person, _ = _merge_all(
        [
            _edit(CIVIL, 1, "c1", {"full_name": names[0]}),
            _edit(POPULATION, 2, "p2", {"full_name": names[1]}),
        ]
    )
    restored = _through_changelog(person).state.fields["full_name"]
    assert [restored.latest[CIVIL].value, restored.latest[POPULATION].value] == names
    assert all(unicodedata.is_normalized("NFC", name) for name in names)


def _validate(record: dict[str, Any], schema: Any) -> None:
    fastavro.validation.validate(record, schema, raise_errors=True)


def test_a_person_record_matches_its_schema_and_carries_the_merged_values_only() -> None:
    person, _ = _merge_all(HISTORY)
    step = history_step(
        person,
        merged_values(person, DEFAULT_POLICY),
        published=True,
        causes=[],
        conflicts=[],
        ts_ms=1,
    )
    record = person_to_avro(person, step)
    _validate(record, PERSON)
    assert (record["hash"], record["prev_hash"]) == (step["hash"], "")
    assert (record["person"], record["version"]) == ("079203001234", person.version)
    assert record["values"] == {
        "full_name": "Nguyễn Thị Ánh",  # civil's, under authority; population's is held
        "sex": "Nữ",
        "household": 42,
        "religion": "Phật giáo",
        "id_cards": 2.5,
        "pin": True,
        "date_of_death": None,  # set to null: a sink writes the null
    }


def test_the_state_record_holds_the_provenance_of_every_value() -> None:
    person, _ = _merge_all(HISTORY)
    record = state_to_avro(person)
    _validate(record, PERSON_STATE)
    events = [e["event_id"] for e in record["events"]]
    assert sorted(events) == ["c1", "c4", "p2", "p3"]  # each event once
    name = next(f for f in record["fields"] if f["field"] == "full_name")
    assert sorted(events[e["event"]] for e in name["latest"]) == ["c1", "p2"]
    assert events[name["earliest"]["event"]] == "c1"
    (held,) = record["open_conflicts"]
    assert (held["field"], held["decision"]) == ("full_name", "held")
    assert events[held["contested"]["event"]] == "p2"


def test_a_state_an_earlier_release_wrote_as_json_still_loads() -> None:
    edit = ["full_name", "Nguyễn Thị Ánh", CIVIL, 1, 1, CIVIL, "c1"]
    other = ["full_name", "Nguyễn Thị Anh", POPULATION, 2, 1, POPULATION, "p2", True]
    document = {
        "person": "079203001234",
        "version": 3,
        "fields": {"full_name": {"latest": [edit, other], "earliest": edit}},
        "open": {},
        "successor": None,
        "former_keys": ["civil#7"],
        "has_row": True,
    }
    person = legacy_state_from_json(json.dumps(document).encode())
    state = person.state.fields["full_name"]
    assert state.latest[CIVIL].value == "Nguyễn Thị Ánh"
    assert state.latest[POPULATION].learned
    assert state.earliest == state.latest[CIVIL]
    assert (person.version, person.former_keys, person.has_row) == (3, ("civil#7",), True)


def test_every_conflict_record_matches_its_schema() -> None:
    person, conflicts = _merge_all(HISTORY)
    decision = PersonEdit(
        "079203001234",
        STEWARD,
        "steward:1",
        Hlc(9, 0, "steward:x"),
        {"full_name": "Nguyễn Thị Anh"},
        resolves=person.open_conflicts["full_name"].conflict_id,
        actor="x",
    )
    conflicts += merge(person, decision, DEFAULT_POLICY).conflicts
    later = _edit(CIVIL, 9, "c9", {"full_name": "Nguyễn Thị Anh"})
    conflicts += merge(person, later, DEFAULT_POLICY).conflicts
    assert {c.decision for c in conflicts} == {"held", "kept", "resolved", "superseded"}
    for conflict in conflicts:
        record = conflict_to_avro(conflict)
        _validate(record, CONFLICT)
        assert record["conflict_id"] == conflict.conflict_id
        assert record["decision"] == conflict.decision
        assert record["actor"] == conflict.actor


def test_the_changelog_keeps_a_moved_person_and_the_former_keys() -> None:
    person, _ = _merge_all(HISTORY)
    moved = replace(person, successor="001190000002", former_keys=("civil#7", "001090000001"))
    assert _through_changelog(moved) == moved


@settings(max_examples=200)
@given(
    edits,
    st.one_of(st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.text()),
    st.one_of(st.none(), st.text(max_size=12)),
    st.lists(st.text(max_size=12), max_size=3).map(tuple),
)
def test_an_edit_record_matches_its_schema_and_gives_back_the_edit(
    edit: PersonEdit,
    resolves: str | None,
    actor: str | None,
    link_to: str | None,
    former_keys: tuple[str, ...],
) -> None:
    edit = replace(edit, resolves=resolves, actor=actor, link_to=link_to, former_keys=former_keys)
    record = edit_to_avro(edit)
    _validate(record, PERSON_EDIT)
    assert edit_from_avro(record) == edit
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, PERSON_EDIT, record)
    buffer.seek(0)
    read = fastavro.schemaless_reader(buffer, PERSON_EDIT, None)
    assert isinstance(read, dict)
    decoded = edit_from_avro(read)
    assert decoded == edit
    assert [type(v) for v in decoded.fields.values()] == [type(v) for v in edit.fields.values()]


@pytest.mark.parametrize(
    ("person", "partitions", "expected"),
    [("p1", 12, 7), ("079203001234", 12, 4), ("Nguyễn", 3, 1), ("p1", 1, 0)],
)
def test_a_persons_edits_partition_is_fixed(person: str, partitions: int, expected: int) -> None:
    assert person_partition(person, partitions) == expected  # the same in every process


@given(st.text(), st.integers(1, 256))
def test_the_edits_partition_is_within_range(person: str, partitions: int) -> None:
    assert 0 <= person_partition(person, partitions) < partitions
