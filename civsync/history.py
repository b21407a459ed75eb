"""A person's history from the topics alone, and the check of every history's hash chain.

Where a person's records are: the merger writes each step of a person's history
(``schemas/person_version.avsc``) to ``civsync.person.history``, keyed by the person's key
as UTF-8, in the partition ``engine.mapping.person_partition`` gives the key, the same as
its state on ``civsync.merge.state``. So ``history`` reads one partition per key of the
person (its key, the keys it was known by, the key it moved to), from its beginning,
keeping only the records of those keys (compared as bytes, decoded only when they match):
memory holds one person's steps, never a topic. Steps carry their changes (the source
events and steward decisions, with the values each gave), the conflicts raised and closed,
identity links and the merged values after the step; the state as of a time is the last
step written at or before it. The same topics give the same answer, whatever merger
restarts happened while they were written.

``verify`` recomputes every chain (``engine.chain``), one partition at a time, anchored to
the last step each person's state records; it names the first step that does not hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics
from connectors.settings import KafkaSettings
from engine.chain import Break, ChainChecker
from engine.mapping import person_partition


@dataclass(frozen=True)
class Step:
    """One step of a person's history: the record, and where it was read."""

    record: dict[str, Any]
    where: str

    @property
    def key(self) -> str:
        return str(self.record["person"])

    @property
    def ts_ms(self) -> int:
        return int(self.record["ts_ms"])


@dataclass(frozen=True)
class History:
    """Every step of one person, under all its keys, in the order they were written."""

    keys: tuple[str, ...]  # the key asked for first, then the others, sorted
    steps: tuple[Step, ...]

    def until(self, ts_ms: int) -> History:
        """The history as it stood at ``ts_ms``."""
        return History(self.keys, tuple(s for s in self.steps if s.ts_ms <= ts_ms))

    def state(self) -> dict[str, Any] | None:
        """The person's merged state after the last step: the key it was known by then, its
        version, values and former keys (as civsync.person had them); None if none yet."""
        last: dict[str, Step] = {}
        for step in self.steps:
            last[step.key] = step
        current = [s for s in last.values() if s.record["moved_to"] is None]
        if not current:
            return None
        record = max(current, key=lambda s: s.ts_ms).record
        return {name: record[name] for name in ("person", "version", "values", "former_keys")}


class HistoryReader:
    """Reads people's histories and checks their chains on one deployment's topics."""

    def __init__(
        self, kafka: KafkaSettings, decoder: AvroDecoder, topics: MergeTopics, partitions: int
    ) -> None:
        self._kafka, self._decoder = kafka, decoder
        self._topics, self._partitions = topics, partitions

    def history(self, key: str) -> History:
        """Every step of the person known by ``key``, following its identity links."""
        known, pending, steps = {key}, {key}, list[Step]()
        while pending:
            found = list(self._steps(pending))
            steps += found
            linked = {k for s in found for k in (*s.record["former_keys"], s.record["moved_to"])}
            pending = {k for k in linked if k is not None} - known
            known |= pending
        steps.sort(key=lambda s: s.ts_ms)  # stable: each key's steps stay in written order
        return History((key, *sorted(known - {key})), tuple(steps))

    def _steps(self, keys: set[str]) -> Iterator[Step]:
        wanted = {k.encode() for k in keys}
        for partition in sorted({person_partition(k, self._partitions) for k in keys}):
            yield from self._read(partition, wanted)

    def verify(self, person: str | None = None) -> Verdict:
        """Check the chain of ``person`` (its key), or of everyone."""
        if person is None:
            partitions = list(range(self._partitions))
        else:
            partitions = [person_partition(person, self._partitions)]
        verdict = Verdict()
        for partition in partitions:
            heads, next_offset = self._heads(partition, person)
            checker = ChainChecker(heads)
            for step in self._read(partition, None if person is None else {person.encode()}):
                found = checker.check(step.record, step.where)
                if found is not None:
                    return verdict.add(checker, found)
            if checker.unanchored():  # the merger went on: read its state's tail
                heads |= self._heads(partition, person, next_offset)[0]
            verdict.add(checker, checker.beyond_heads(heads))
            if verdict.broken is not None:
                return verdict
        return verdict

    def _read(self, partition: int, wanted: set[bytes] | None) -> Iterator[Step]:
        """The steps of ``partition`` whose key is ``wanted`` (None: every step), in order;
        the others are not decoded."""
        topic = self._topics.history.name
        for message in read_to_end(self._kafka, topic, [partition]):
            if wanted is None or message.key() in wanted:
                where = f"{topic} partition {partition} offset {message.offset()}"
                yield Step(self._decoder.decode(message.value() or b"", where), where)

    def _heads(
        self, partition: int, person: str | None, start: int = 0
    ) -> tuple[dict[str, str], int]:
        """The last step of each person, as the merger's state records it (person -> hash),
        and the offset after the state records read."""
        topic, wanted = self._topics.state.name, None if person is None else person.encode()
        heads, next_offset = {}, start
        offsets = {partition: start} if start else None  # else from the first one kept
        for message in read_to_end(self._kafka, topic, [partition], start=offsets):
            next_offset = (message.offset() or 0) + 1
            payload, key = message.value(), message.key()
            if not payload or payload.startswith(b"{") or (wanted and key != wanted):
                continue  # a tombstone, a state from before the chain (JSON), someone else
            state = self._decoder.decode(payload, f"{topic} partition {partition}")
            if state.get("chain"):
                heads[state["person"]] = state["chain"]
        return heads, next_offset


@dataclass
class Verdict:
    """What ``verify`` checked, and the first break it found."""

    steps: int = 0
    people: int = 0
    partitions: int = 0
    broken: Break | None = None

    def add(self, checker: ChainChecker, broken: Break | None) -> Verdict:
        self.steps += checker.steps
        self.people += checker.people
        self.partitions += 1
        self.broken = broken
        return self
