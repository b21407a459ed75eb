"""The people a merger member owns: on disk in RocksDB, a few decoded in memory.

This is ``engine.step.People`` for the Kafka shell. The people of each partition the member
is assigned live in that partition's RocksDB database (``connectors.merge.state_store``,
under ``<directory>/<changelog topic id>``: a changelog deleted and created again starts a
new state), as the bytes of their last committed state record (Avro ``PersonState``, as on the
changelog). A small cache keeps the most recently used people decoded; the rest cost a
RocksDB get and a decode when an edit reaches them. Memory is therefore bounded by the
cache and RocksDB's budget, not by the number of people.

Within a transaction, the people the step changed are held here (``changed``) until the
shell has written them to the changelog. Only once the transaction has committed does
``committed`` write them to RocksDB, with the changelog offset after them, in one atomic
batch: the database never holds state the changelog does not. On assignment, ``restore``
reads each partition's changelog from the offset its database has seen up to, to the end,
so a member that restarts reads only what others wrote meanwhile; a database ahead of its
changelog (the topic was recreated) is emptied and restored from the beginning.
"""

from __future__ import annotations

import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from connectors.kafka.admin import TopicAdmin
from connectors.kafka.reader import read_to_end
from connectors.merge.state_store import StateStore
from connectors.settings import KafkaSettings
from engine.mapping import person_partition
from engine.person import MergedPerson

log = structlog.get_logger(__name__)

Decode = Callable[[bytes, str], MergedPerson]  # a state record's bytes, where -> the person
_RESTORE_BATCH = 5_000  # changelog records per RocksDB write while restoring


@dataclass
class _Pending:
    """Changelog records read for one partition, not yet written to its database."""

    items: dict[str, bytes | None] = field(default_factory=dict)
    next_offset: int = 0


class OwnedPeople:
    """The people of the partitions assigned to this member (``engine.step.People``)."""

    def __init__(
        self,
        directory: Path,
        partitions: int,
        decode: Decode,
        *,
        cache_people: int = 5_000,
    ) -> None:
        self.partitions = partitions
        self._directory = directory
        self._store = StateStore(directory / "none")  # replaced by restore: the changelog's
        self._decode = decode
        self._cache: OrderedDict[str, MergedPerson] = OrderedDict()
        self._cache_people = cache_people
        self._owned: set[int] = set()  # the partitions assigned, restored
        self.changed: dict[str, tuple[MergedPerson, bool]] = {}  # person -> (state, view changed)

    # --- engine.step.People ---

    def owns(self, person: str) -> bool:
        return person_partition(person, self.partitions) in self._owned

    def get(self, person: str) -> MergedPerson | None:
        held = self.changed.get(person)
        if held is not None:
            return held[0]
        merged = self._cache.get(person)
        if merged is not None:
            self._cache.move_to_end(person)
            return merged
        partition = person_partition(person, self.partitions)
        payload = self._store.partition(partition).get(person)
        if payload is None:
            return None
        merged = self._decode(payload, f"state of partition {partition}")
        self._remember(person, merged)
        return merged

    def put(self, merged: MergedPerson, *, changed: bool) -> None:
        person = merged.state.person
        held = self.changed.get(person)
        self.changed[person] = (merged, changed or (held is not None and held[1]))

    # --- transactions ---

    def committed(self, written: dict[str, bytes], next_offsets: dict[int, int]) -> None:
        """The transaction that logged ``written`` (person -> state record) committed; the
        changelog partitions now end before ``next_offsets``."""
        by_partition: dict[int, dict[str, bytes | None]] = {p: {} for p in next_offsets}
        for person, payload in written.items():
            by_partition[person_partition(person, self.partitions)][person] = payload
        for partition, items in by_partition.items():
            self._store.partition(partition).write(items, next_offsets[partition])
        for person, (merged, _) in self.changed.items():
            self._remember(person, merged)
        self.changed.clear()

    def aborted(self) -> None:
        """The transaction did not commit: forget what it changed."""
        for person in self.changed:
            self._cache.pop(person, None)
        self.changed.clear()

    def _remember(self, person: str, merged: MergedPerson) -> None:
        self._cache[person] = merged
        self._cache.move_to_end(person)
        if len(self._cache) > self._cache_people:
            self._cache.popitem(last=False)

    # --- partitions ---

    def restore(self, kafka: KafkaSettings, changelog: str, partitions: list[int]) -> int:
        """Open ``partitions`` and bring each database up to the end of its changelog; how
        many changelog records that read."""
        started = time.monotonic()
        admin = TopicAdmin(kafka)
        self._store_for(admin.topic_id(changelog))
        ends = admin.partition_ends(changelog) if partitions else {}
        start: dict[int, int] = {}
        for partition in partitions:
            store = self._store.open(partition)
            seen = store.next_offset()
            if seen is not None and seen > ends.get(partition, 0):
                end = ends.get(partition)
                log.warning("state ahead of its changelog; restoring it from the beginning",
                            partition=partition, stored=seen, changelog_end=end)  # fmt: skip
                store = self._store.reset(partition)
                seen = None
            if seen is not None:
                start[partition] = seen
        read = 0
        pending: dict[int, _Pending] = {}
        for message in read_to_end(kafka, changelog, partitions, start=start):
            read += 1
            number, key, offset = message.partition(), message.key(), message.offset()
            assert number is not None and offset is not None, "a read record has a position"  # noqa: S101, PT018
            assert key is not None, "state records are keyed by person"  # noqa: S101
            batch = pending.setdefault(number, _Pending())
            batch.items[key.decode()] = message.value()
            batch.next_offset = offset + 1
            if read % _RESTORE_BATCH == 0:
                self._write(pending)
        self._write(pending)
        for partition in partitions:  # read to the end: resume from the end
            store = self._store.partition(partition)
            if ends.get(partition, 0) > (store.next_offset() or 0):
                store.write({}, ends[partition])
        self._owned.update(partitions)
        log.info(
            "state restored",
            partitions=partitions,
            records_read=read,
            people=sum(self._store.partition(p).count() for p in partitions),
            seconds=round(time.monotonic() - started, 2),
        )
        return read

    def _store_for(self, topic_id: str) -> None:
        """Keep the state of the changelog ``topic_id``; the state of any earlier changelog
        of that name is deleted."""
        name = topic_id.replace("/", "_").replace("+", "-")  # base64 -> a directory name
        if self._store.directory.name == name:
            return
        self._store.close_all()
        self._owned.clear()
        if self._directory.is_dir():
            for old in self._directory.iterdir():
                if old.name != name:
                    shutil.rmtree(old, ignore_errors=True)
        self._store = StateStore(self._directory / name)

    def _write(self, pending: dict[int, _Pending]) -> None:
        for partition, batch in pending.items():
            self._store.partition(partition).write(batch.items, batch.next_offset)
        pending.clear()

    def revoke(self, partitions: list[int]) -> None:
        """Close ``partitions`` (their databases stay on disk for the next assignment)."""
        for partition in partitions:
            self._store.close(partition)
            self._owned.discard(partition)
        self._cache.clear()
        self.changed.clear()

    def close(self) -> None:
        self._store.close_all()
        self._owned.clear()
        self._cache.clear()
        self.changed.clear()
