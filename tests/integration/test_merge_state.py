"""The merger's state beyond RAM (connectors.merge.people) on a real broker and real RocksDB:
a restore copies the changelog into RocksDB; a member that comes back reads only what was
written since; committed state reaches RocksDB, aborted state never does; a changelog
deleted and created again starts a new state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from civsync.config import CivsyncSettings
from connectors.kafka.admin import TopicAdmin, TopicSpec
from connectors.merge.people import OwnedPeople
from engine.mapping import person_partition
from engine.merge import PersonState
from engine.person import MergedPerson

PARTITIONS = 3


def _decode(payload: bytes, where: str) -> MergedPerson:
    """A stand-in state codec: the payload is ``person:version``."""
    person, version = payload.decode().split(":")
    return MergedPerson(PersonState(person), int(version))


def _log(settings: CivsyncSettings, topic: str, people: dict[str, int]) -> None:
    """State records of ``people`` (person -> version) on their partitions of ``topic``."""
    producer = Producer(settings.kafka.client_config())
    for person, version in people.items():
        producer.produce(
            topic,
            key=person.encode(),
            value=f"{person}:{version}".encode(),
            partition=person_partition(person, PARTITIONS),
        )
    assert producer.flush(30) == 0


def _create(settings: CivsyncSettings, topic: str) -> None:
    TopicAdmin(settings.kafka).ensure([TopicSpec(topic, PARTITIONS, 1, compacted=True)])


@pytest.fixture
def changelog(settings: CivsyncSettings, unique_name: str) -> str:
    """A state changelog of the test's own."""
    topic = f"{unique_name}.merge.state"
    _create(settings, topic)
    return topic


def _versions(people: OwnedPeople, keys: list[str]) -> dict[str, int | None]:
    return {k: None if (p := people.get(k)) is None else p.version for k in keys}


def test_state_is_restored_into_rocksdb_and_resumed_from_where_it_was(
    settings: CivsyncSettings, changelog: str, tmp_path: Path
) -> None:
    topic = changelog
    first = {f"0790{n:08d}": 1 for n in range(300)}
    _log(settings, topic, first)
    people = OwnedPeople(tmp_path, PARTITIONS, _decode, cache_people=10)
    assert people.restore(settings.kafka, topic, list(range(PARTITIONS))) == 300
    assert set(_versions(people, list(first)).values()) == {1}
    assert all(people.owns(person) for person in first)
    people.close()

    later = {f"0790{n:08d}": 2 for n in range(50)}  # another member's work meanwhile
    _log(settings, topic, later)
    again = OwnedPeople(tmp_path, PARTITIONS, _decode, cache_people=10)
    assert again.restore(settings.kafka, topic, list(range(PARTITIONS))) == 50  # only the tail
    versions = _versions(again, list(first))
    assert [versions[p] for p in later] == [2] * 50
    assert versions["079000000299"] == 1
    again.close()


def test_only_committed_state_reaches_rocksdb(
    settings: CivsyncSettings, changelog: str, tmp_path: Path
) -> None:
    topic = changelog
    people = OwnedPeople(tmp_path, PARTITIONS, _decode, cache_people=0)
    people.restore(settings.kafka, topic, list(range(PARTITIONS)))
    a, b = "079000000001", "079000000002"
    people.put(MergedPerson(PersonState(a), 7), changed=True)
    assert _versions(people, [a]) == {a: 7}  # the transaction sees its own change
    people.aborted()
    assert _versions(people, [a]) == {a: None}
    people.put(MergedPerson(PersonState(b), 3), changed=True)
    partition = person_partition(b, PARTITIONS)
    people.committed({b: f"{b}:3".encode()}, {partition: 1})
    assert _versions(people, [a, b]) == {a: None, b: 3}  # from RocksDB: the cache holds none
    people.close()


def test_a_changelog_created_again_starts_a_new_state(
    settings: CivsyncSettings, changelog: str, tmp_path: Path
) -> None:
    topic = changelog
    _log(settings, topic, {f"0790{n:08d}": 1 for n in range(40)})
    people = OwnedPeople(tmp_path, PARTITIONS, _decode)
    people.restore(settings.kafka, topic, list(range(PARTITIONS)))
    people.close()
    admin = TopicAdmin(settings.kafka)
    admin.delete([topic])
    deadline = time.monotonic() + 30
    while True:  # the broker may take a moment to forget the old topic
        try:
            _create(settings, topic)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    _log(settings, topic, {"079000000001": 5})
    fresh = OwnedPeople(tmp_path, PARTITIONS, _decode)
    assert fresh.restore(settings.kafka, topic, list(range(PARTITIONS))) == 1
    assert _versions(fresh, ["079000000001", "079000000002"]) == {
        "079000000001": 5,
        "079000000002": None,  # the old changelog's people are gone
    }
    assert len(list(tmp_path.iterdir())) == 1  # the old state was deleted
    fresh.close()
