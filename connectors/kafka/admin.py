"""Topic administration: explicit partitions, replication and retention; idempotent creation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, OffsetSpec

from connectors.kafka.errors import KafkaFatalError, KafkaOperationError, RefusalWatch
from connectors.settings import KafkaSettings

FOREVER = -1
# What a broker answers about a topic it has only just created.
_SETTLING = frozenset(
    {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
    }
)


@dataclass(frozen=True)
class TopicSpec:
    """What a topic must look like. ``retention_ms=None`` keeps the broker default."""

    name: str
    partitions: int
    replication_factor: int = 1
    retention_ms: int | None = None
    compacted: bool = False
    fixed_partitions: bool = True  # False: a shared topic other components may size differently

    def config(self) -> dict[str, str]:
        config = {"cleanup.policy": "compact" if self.compacted else "delete"}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        return config


@dataclass(frozen=True)
class TopicState:
    """A topic as the broker describes it."""

    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


class TopicAdmin:
    """Creates, inspects and deletes topics on the cluster given by ``settings``."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 30.0) -> None:
        self._watch = RefusalWatch()  # a refused login or certificate: fatal, said clearly
        self._admin = AdminClient(settings.client_config() | {"error_cb": self._watch})
        self._settings, self._timeout_s = settings, timeout_s

    def _translate(self, error: KafkaException, doing: str) -> KafkaOperationError:
        self._admin.poll(0)  # serve the error callbacks the failed operation left queued
        return self._watch.translate(error, doing)

    def ensure(self, specs: list[TopicSpec]) -> list[str]:
        """Create the missing topics; names created. An existing topic must match its spec."""
        existing = self.names()
        missing = [spec for spec in specs if spec.name not in existing]
        futures = (
            self._admin.create_topics(
                [
                    NewTopic(s.name, s.partitions, s.replication_factor, config=s.config())
                    for s in missing
                ],
                operation_timeout=self._timeout_s,
            )
            if missing
            else {}
        )
        for name, future in futures.items():
            try:
                future.result(timeout=self._timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise self._translate(exc, f"creating topic {name}") from exc
        for spec in specs:
            self._check_matches(spec)
        return [spec.name for spec in missing]

    def names(self) -> set[str]:
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise self._translate(exc, "listing topics") from exc
        return {name for name in metadata.topics if not name.startswith("__")}

    def describe(self, name: str) -> TopicState:
        """The topic as the cluster sees it. A topic another process has just created may be
        unknown to this broker's metadata for a moment; that is waited out."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                topic, entries = self._metadata(name)
                break
            except KafkaException as exc:
                settling = exc.args[0].code() in _SETTLING
                if not settling or time.monotonic() > deadline:
                    raise self._translate(exc, f"describing topic {name}") from exc
                time.sleep(0.2)
        replicas = {len(p.replicas) for p in topic.partitions.values()}
        return TopicState(
            name=name,
            partitions=len(topic.partitions),
            replication_factor=min(replicas, default=0),
            config={key: entry.value for key, entry in entries.items()},
        )

    def _metadata(self, name: str) -> tuple[Any, dict[str, Any]]:
        """The topic's metadata and config entries; KafkaException if the broker has none."""
        topic = self._admin.list_topics(topic=name, timeout=self._timeout_s).topics[name]
        if topic.error is not None:
            raise KafkaException(topic.error)
        resource = ConfigResource(ConfigResource.Type.TOPIC, name)
        return topic, self._admin.describe_configs([resource])[resource].result(self._timeout_s)

    def topic_id(self, name: str) -> str:
        """The topic's id: a topic deleted and created again under the same name has a new one."""
        future = self._admin.describe_topics(TopicCollection([name]))[name]
        try:
            return str(future.result(self._timeout_s).topic_id)
        except KafkaException as exc:
            raise self._translate(exc, f"describing {name}") from exc

    def end_offsets(self, name: str) -> int:
        """The sum of the topic's partition end offsets: it grows whenever anything is written."""
        return sum(self.partition_ends(name).values())

    def partition_ends(self, name: str) -> dict[int, int]:
        """Each partition's end offset. A topic just created may have no leaders yet for a
        moment; that is waited out."""
        deadline = time.monotonic() + self._timeout_s
        while True:
            try:
                topic = self._admin.list_topics(topic=name, timeout=self._timeout_s).topics[name]
                partitions = [TopicPartition(name, p) for p in topic.partitions]
                latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped stubs
                futures = self._admin.list_offsets(dict.fromkeys(partitions, latest))
                return {tp.partition: f.result(self._timeout_s).offset for tp, f in futures.items()}
            except KafkaException as exc:
                settling = exc.args[0].code() in _SETTLING
                if not settling or time.monotonic() > deadline:
                    raise self._translate(exc, f"reading the end offsets of {name}") from exc
                time.sleep(0.2)

    def group_progress(self, group: str) -> tuple[int, int]:
        """(offsets the consumer ``group`` has committed, records it has still to read), summed
        over every partition it has committed. A transactional topic ends each transaction
        with a marker no consumer commits past, so a caught-up group still lags by up to one
        per partition written transactionally: compare progress over time, not to zero."""
        positions = self._committed(group)
        lag = self.group_lag(group, positions)
        return sum(positions.values()), sum(lag.values())

    def group_lag(
        self, group: str, positions: dict[tuple[str, int], int] | None = None
    ) -> dict[tuple[str, int], int]:
        """Records the consumer ``group`` has still to read, per (topic, partition) it has
        committed (markers included, as in ``group_progress``)."""
        positions = self._committed(group) if positions is None else positions
        if not positions:
            return {}
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # untyped stubs
        try:
            ends = self._admin.list_offsets({TopicPartition(t, p): latest for t, p in positions})
            return {
                (tp.topic, tp.partition): max(
                    0, f.result(self._timeout_s).offset - positions[(tp.topic, tp.partition)]
                )
                for tp, f in ends.items()
            }
        except KafkaException as exc:
            raise self._translate(exc, f"reading the lag of consumer group {group}") from exc

    def group_members(self, group: str) -> int:
        """How many consumers are in ``group`` now."""
        try:
            described = self._admin.describe_consumer_groups([group])[group]
            return len(described.result(self._timeout_s).members)
        except KafkaException as exc:
            raise self._translate(exc, f"describing consumer group {group}") from exc

    def written_since(self, name: str, since_ms: int) -> int:
        """Records (and transaction markers) written to topic ``name`` since ``since_ms``."""
        ends = self.partition_ends(name)
        spec = OffsetSpec.for_timestamp(since_ms)
        try:
            found = self._admin.list_offsets({TopicPartition(name, p): spec for p in ends})
            firsts = {tp.partition: f.result(self._timeout_s).offset for tp, f in found.items()}
        except KafkaException as exc:
            raise self._translate(exc, f"reading the offsets of {name}") from exc
        # -1: nothing written since then
        return sum(end - firsts[p] for p, end in ends.items() if firsts[p] >= 0)

    def _committed(self, group: str) -> dict[tuple[str, int], int]:
        """The offsets ``group`` has committed, by (topic, partition), asked of every topic's
        partitions through a consumer of that group that joins nothing. Not with the admin
        client's ``list_consumer_group_offsets``: when the group's coordinator answers
        NOT_COORDINATOR (a broker just started, its offsets topic loading) librdkafka
        dereferences the admin client's missing consumer group and the process dies of a
        segmentation fault (librdkafka #5040; the first `civsync demo` on a new machine)."""
        try:
            metadata = self._admin.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise self._translate(exc, "listing topics") from exc
        partitions = [
            TopicPartition(name, p)
            for name, topic in metadata.topics.items()
            if not name.startswith("__")
            for p in topic.partitions
        ]
        reader = Consumer(
            self._settings.client_config()
            | {
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_committed",  # offsets of open transactions wait
                "error_cb": self._watch,
            }
        )
        try:
            committed = reader.committed(partitions, timeout=self._timeout_s)
        except KafkaException as exc:
            raise self._translate(exc, f"reading the offsets of consumer group {group}") from exc
        finally:
            reader.close()
        return {(tp.topic, tp.partition): tp.offset for tp in committed if tp.offset >= 0}

    def delete(self, names: list[str]) -> None:
        if not names:
            return
        for name, future in self._admin.delete_topics(names).items():
            try:
                future.result(timeout=self._timeout_s)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise self._translate(exc, f"deleting topic {name}") from exc

    def _check_matches(self, spec: TopicSpec) -> None:
        state = self.describe(spec.name)
        drift = [
            f"{key}: wanted {wanted}, found {found}"
            for key, wanted, found in [
                *(
                    [("partitions", spec.partitions, state.partitions)]
                    if spec.fixed_partitions
                    else []
                ),
                ("replication factor", spec.replication_factor, state.replication_factor),
                *[(k, v, state.config.get(k)) for k, v in spec.config().items()],
            ]
            if str(wanted) != str(found)
        ]
        if drift:
            raise KafkaFatalError(f"topic {spec.name} exists but differs: {'; '.join(drift)}")
