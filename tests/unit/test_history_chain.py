"""A person's history is hash-chained (engine.chain): a step read back from Avro verifies;
an altered, removed or inserted step breaks the chain at exactly that step; a step that
extends a chain with recomputed hashes is caught by the merger's anchor."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any

import fastavro
from hypothesis import given
from hypothesis import strategies as st

from connectors.merge.records import history_step, merged_values
from engine.chain import ChainChecker, canonical, seal
from engine.events import Hlc, Value
from engine.mapping import PersonEdit
from engine.person import MergedPerson, merge
from engine.policy import CIVIL, DEFAULT_POLICY, POPULATION
from schemas import load

VERSION = fastavro.parse_schema(json.loads(load("person_version")))
PIN = "079203001234"


def _through_avro(record: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, VERSION, record)
    buffer.seek(0)
    return fastavro.schemaless_reader(buffer, VERSION, None)  # type: ignore[return-value]


def _history(edits: list[PersonEdit]) -> list[dict[str, Any]]:
    """The steps a merger writes for ``edits``, one transaction each, as read back."""
    person, steps = MergedPerson.new(PIN), []
    for edit in edits:
        result = merge(person, edit, DEFAULT_POLICY)
        values = merged_values(result.person, DEFAULT_POLICY)
        step = history_step(
            result.person,
            values,
            published=result.changed,
            causes=[edit],
            conflicts=result.conflicts,
            ts_ms=edit.hlc.wall_ms,
        )
        person = replace(result.person, chain=step["hash"])
        steps.append(_through_avro(step))
    return steps


def _edit(origin: str, wall: int, fields: dict[str, Value]) -> PersonEdit:
    return PersonEdit(PIN, origin, f"{origin}-{wall}", Hlc(wall, 0, origin), fields)


EDITS = [
    _edit(CIVIL, 1, {"full_name": "Nguyễn Thị Ánh", "birth_date": "1992-03-04"}),
    _edit(POPULATION, 2, {"full_name": "Nguyen Thi Anh", "household": 42}),  # held
    _edit(POPULATION, 3, {"religion": "Phật giáo", "id_cards": 2.5}),
]


def _check(steps: list[dict[str, Any]], heads: dict[str, str] | None = None) -> Any:
    checker = ChainChecker(heads or {})
    for n, step in enumerate(steps):
        found = checker.check(step, f"offset {n}")
        if found is not None:
            return found
    return checker.beyond_heads(heads or {})


def test_steps_read_back_from_avro_chain_and_verify() -> None:
    steps = _history(EDITS)
    assert [s["prev_hash"] for s in steps] == ["", steps[0]["hash"], steps[1]["hash"]]
    assert _check(steps, {PIN: steps[-1]["hash"]}) is None
    assert [c["decision"] for c in steps[1]["conflicts"]] == ["held"]
    assert steps[1]["events"][0]["fields"]["household"] == 42


def test_an_altered_step_breaks_at_that_step() -> None:
    steps = _history(EDITS)
    steps[1]["values"]["full_name"] = "Trần Văn Bình"
    found = _check(steps, {PIN: steps[-1]["hash"]})
    assert (found.version, found.where) == (steps[1]["version"], "offset 1")
    assert "content" in found.reason


def test_a_removed_step_breaks_the_next() -> None:
    steps = _history(EDITS)
    del steps[1]
    found = _check(steps, {PIN: steps[-1]["hash"]})
    assert found.where == "offset 1"
    assert "prev_hash" in found.reason


def test_a_forged_copy_of_an_earlier_step_is_caught_where_it_was_written() -> None:
    steps = _history(EDITS)
    forged = {**steps[1], "values": {**steps[1]["values"], "full_name": "Trần Văn Bình"}}
    seal(forged, steps[1]["prev_hash"])  # hashes recomputed: the step itself is consistent
    found = _check([*steps, forged], {PIN: steps[-1]["hash"]})
    assert found.where == "offset 3"


def test_a_forged_extension_is_caught_by_the_anchor_and_a_real_one_is_not() -> None:
    steps = _history(EDITS)
    extension = seal({**steps[-1], "version": steps[-1]["version"] + 1}, steps[-1]["hash"])
    forged = _check([*steps, extension], {PIN: steps[-1]["hash"]})
    assert (forged.version, forged.where) == (extension["version"], "offset 3")
    # the same step, written by the merger after the heads were first read: the state read
    # again records it
    checker = ChainChecker({PIN: steps[-1]["hash"]})
    assert all(checker.check(s, "") is None for s in [*steps, extension])
    assert checker.unanchored() == {PIN}
    assert checker.beyond_heads({PIN: extension["hash"]}) is None


def test_a_history_missing_its_anchor_breaks() -> None:
    steps = _history(EDITS)
    found = _check(steps[:1], {PIN: steps[-1]["hash"]})
    assert found is not None
    assert "no merger wrote it" in found.reason or "lacks" in found.reason


_VALUES = st.one_of(
    st.none(),
    st.text(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
)


@given(st.dictionaries(st.text(min_size=1), _VALUES, max_size=6))
def test_the_canonical_encoding_survives_avro(values: dict[str, Value]) -> None:
    person = MergedPerson.new(PIN)
    step = history_step(person, values, published=True, causes=[], conflicts=[], ts_ms=7)
    back = _through_avro(step)
    assert canonical(back) == canonical(step)
    assert ChainChecker({}).check(back, "") is None


def test_conflicts_name_the_value_that_stands() -> None:
    held = _history(EDITS)[1]["conflicts"][0]
    assert (held["standing"], held["contested"]) == ("Nguyễn Thị Ánh", "Nguyen Thi Anh")
