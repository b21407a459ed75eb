"""The merger's RocksDB state store, on a real RocksDB in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.merge.people import OwnedPeople
from connectors.merge.state_store import StateStore
from engine.person import MergedPerson


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(tmp_path / "merger", cache_bytes=8 << 20, write_buffer_bytes=4 << 20)
    yield store
    store.close_all()


def test_put_get_delete(store: StateStore) -> None:
    part = store.open(0)
    assert part.get("001080000001") is None
    assert part.next_offset() is None
    part.write({"001080000001": b"lan", "civil#7": b"hung"}, next_offset=2)
    assert part.get("001080000001") == b"lan"
    assert part.get_many(["civil#7", "nobody", "001080000001"]) == {
        "civil#7": b"hung",
        "001080000001": b"lan",
    }
    part.write({"001080000001": None, "civil#7": b"hung 2"}, next_offset=4)
    assert part.get("001080000001") is None
    assert list(part.items()) == [("civil#7", b"hung 2")]


def test_the_offset_commits_with_its_batch(store: StateStore) -> None:
    part = store.open(3)
    part.write({"a": b"1"}, next_offset=10)
    with pytest.raises(ValueError, match="NUL"):
        part.write({"b": b"2", "\x00next_offset": b"x"}, next_offset=20)
    assert part.next_offset() == 10  # the rejected batch left nothing, offset included
    assert part.get("b") is None
    part.write({}, next_offset=2**40)  # an empty batch moves it alone (e.g. past markers)
    assert part.next_offset() == 2**40


def test_reopen_keeps_people_and_offset(store: StateStore) -> None:
    store.open(1).write({"a": b"1", "b": b"2"}, next_offset=7)
    store.close(1)
    with pytest.raises(KeyError):
        store.partition(1)
    reopened = StateStore(store.directory).open(1)
    try:
        assert reopened.next_offset() == 7
        assert dict(reopened.items()) == {"a": b"1", "b": b"2"}
    finally:
        reopened.close()


def test_reset_wipes(store: StateStore) -> None:
    store.open(0).write({"a": b"1"}, next_offset=5)
    part = store.reset(0)
    assert part is store.partition(0)
    assert part.next_offset() is None
    assert list(part.items()) == []
    assert store.reset(9).next_offset() is None  # never opened: nothing to wipe


def test_partitions_are_independent(store: StateStore) -> None:
    store.open(0).write({"a": b"zero"}, next_offset=1)
    store.open(1).write({"a": b"one", "b": b"one"}, next_offset=9)
    store.reset(1)
    assert store.partition(0).get("a") == b"zero"
    assert store.partition(0).next_offset() == 1
    assert store.open(0) is store.partition(0)  # opening an open partition: the same one
    assert store.count() == 1  # exact before any overwrite or deletion


keys = st.sampled_from(["001080000001", "001080000002", "civil#1", "civil#22", "é"])
batches = st.lists(st.dictionaries(keys, st.none() | st.binary(max_size=40)), max_size=8)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_reopened_store_equals_a_dict(
    tmp_path: Path, batches: list[dict[str, bytes | None]]
) -> None:
    model: dict[str, bytes] = {}
    store = StateStore(tmp_path / "model", cache_bytes=8 << 20, write_buffer_bytes=4 << 20)
    part = store.reset(0)  # hypothesis reuses tmp_path between examples
    for offset, batch in enumerate(batches, start=1):
        part.write(batch, next_offset=offset)
        for key, value in batch.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    store.close_all()
    store = StateStore(tmp_path / "model")
    try:
        part = store.open(0)
        assert dict(part.items()) == model
        assert part.get_many(model) == model
        assert part.next_offset() == (len(batches) or None)
    finally:
        store.close_all()


def test_a_changelog_id_with_base64_slashes_keeps_its_state(tmp_path: Path) -> None:
    """Topic ids are base64 with '/' and '+': the state of the changelog stays where it is
    on the next assignment (it was deleted and read again whenever the id had a '/')."""
    people = OwnedPeople(tmp_path, 1, lambda payload, where: MergedPerson.new("x"))
    changelog_id = "vR6wX/fFQRmxLmDXbs3A+Q"
    people._store_for(changelog_id)
    people._store.open(0).write({"001080000001": b"state"}, next_offset=5)
    people.close()
    again = OwnedPeople(tmp_path, 1, lambda payload, where: MergedPerson.new("x"))
    again._store_for(changelog_id)
    assert again._store.open(0).next_offset() == 5
    again.close()
