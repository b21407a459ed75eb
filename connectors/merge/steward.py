"""Conflict review for data stewards: what is pending, its history, and deciding it.

The history is ``civsync.conflicts`` itself (one record when a conflict is raised, one when
it closes), read to its end. A decision is a ``PersonEdit`` from origin ``steward`` on the
edits topic, in the person's partition: the merger takes it like any edit, so the decided
value flows to civsync.person, to both stores and to the conflict's history.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroDecoder, AvroProducer
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics, edit_to_avro
from connectors.registry import SchemaRegistry
from connectors.settings import KafkaSettings
from engine.errors import FatalError
from engine.events import Hlc, Value
from engine.hlc import HybridClock
from engine.mapping import PersonEdit, person_partition
from engine.policy import STEWARD

PENDING = ("held", "review")  # decisions that wait for a steward


class UnknownConflictError(FatalError):
    """No conflict with that id, or it is no longer waiting for a steward."""


@dataclass(frozen=True)
class ConflictHistory:
    """Every record of one conflict, oldest first."""

    records: tuple[Mapping[str, Any], ...]

    @property
    def latest(self) -> Mapping[str, Any]:
        return self.records[-1]

    @property
    def pending(self) -> bool:
        return self.latest["decision"] in PENDING


def history(
    kafka: KafkaSettings, registry: SchemaRegistry, topics: MergeTopics
) -> dict[str, ConflictHistory]:
    """Every conflict on the conflicts topic so far, by id, in the order they were raised."""
    decoder = AvroDecoder(registry)
    records: dict[str, list[Mapping[str, Any]]] = {}
    messages = sorted(read_to_end(kafka, topics.conflicts.name), key=lambda m: m.timestamp()[1])
    for message in messages:
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
        record = decoder.decode(message.value() or b"", where)
        records.setdefault(record["conflict_id"], []).append(record)
    return {cid: ConflictHistory(tuple(items)) for cid, items in records.items()}


def resolve(
    kafka: KafkaSettings,
    registry: SchemaRegistry,
    topics: MergeTopics,
    conflict: ConflictHistory,
    *,
    value: Value,
    actor: str,
) -> PersonEdit:
    """Decide a pending conflict: ``value`` stands for its person's field from now on."""
    latest = conflict.latest
    if not conflict.pending:
        raise UnknownConflictError(
            f"conflict {latest['conflict_id']} is {latest['decision']}, not waiting for a steward"
        )
    clock = HybridClock(f"{STEWARD}:{actor}")
    for edit in (latest["standing"], latest["contested"]):
        hlc = edit["hlc"]
        clock.observe(Hlc(hlc["wall_ms"], hlc["logical"], hlc["node"]))
    decision = PersonEdit(
        person=latest["person"],
        origin=STEWARD,
        event_id=f"{STEWARD}:{uuid.uuid4()}",
        hlc=clock.tick(),
        fields={latest["field"]: value},
        resolves=latest["conflict_id"],
        actor=actor,
    )
    partitions = TopicAdmin(kafka).describe(topics.edits.name).partitions
    producer = AvroProducer(kafka, registry)
    producer.produce(
        topics.edits,
        {"person": decision.person},
        edit_to_avro(decision),
        partition=person_partition(decision.person, partitions),
    )
    producer.flush()
    return decision
