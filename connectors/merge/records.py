"""The merger's records, in Avro: edits, merged people, conflicts, history and state.

Shapes are ``schemas/person_edit.avsc``, ``person.avsc`` (lean: the merged values, version,
former keys), ``conflict.avsc``, ``person_version.avsc`` (a step of a person's history,
hash-chained: ``engine.chain``) and ``person_state.avsc``: the state changelog
(``civsync.merge.state``) holds ``engine.person.MergedPerson``, the latest edit per origin
and field plus the earliest seen, which is each value's provenance for auditors and what a
restarted merger resumes from. States written as JSON by earlier releases still load.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from connectors.kafka.admin import FOREVER, TopicSpec
from connectors.kafka.avro import AvroTopic
from connectors.quarantine import quarantine_spec
from engine.chain import seal
from engine.events import Hlc
from engine.mapping import PersonEdit
from engine.merge import Conflict, FieldEdit, FieldState, PersonState
from engine.person import MergedPerson
from engine.policy import FieldPolicy, Rule
from schemas import load

_PERSON_KEY, _PERSON_EDIT, _PERSON = load("person_key"), load("person_edit"), load("person")
_CONFLICT_KEY, _CONFLICT = load("conflict_key"), load("conflict")
_PERSON_STATE, _PERSON_VERSION = load("person_state"), load("person_version")


@dataclass(frozen=True)
class MergeTopics:
    """The merger's topics under one prefix (``civsync`` in production; tests use their own).

    ``edits`` and ``state`` are internal; they and ``history`` are co-partitioned:
    partition p of each holds the people whose edits arrive on partition p.
    """

    prefix: str = "civsync"

    @cached_property
    def edits(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.merge.edits", _PERSON_KEY, _PERSON_EDIT)

    @cached_property
    def state(self) -> AvroTopic:
        """Keyed by the person's key as UTF-8 bytes (not Avro), as it always was."""
        return AvroTopic(f"{self.prefix}.merge.state", _PERSON_KEY, _PERSON_STATE)

    @cached_property
    def person(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.person", _PERSON_KEY, _PERSON)

    @cached_property
    def history(self) -> AvroTopic:
        """Every step of every person's history, kept forever; keyed like ``state``."""
        return AvroTopic(f"{self.prefix}.person.history", _PERSON_KEY, _PERSON_VERSION)

    @cached_property
    def conflicts(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.conflicts", _CONFLICT_KEY, _CONFLICT)

    @property
    def retry(self) -> str:
        """Inputs of the merger sent again by ``civsync quarantine retry``: the original
        bytes, headed with the quarantine record they retry and the topic they came from."""
        return f"{self.prefix}.merge.retry"

    def sink_retry(self, store: str) -> str:
        """Person records sent again to ``store``'s sink by ``civsync quarantine retry``."""
        return f"{self.prefix}.sink.{store}.retry"

    def specs(self, partitions: int, replication_factor: int = 1) -> list[TopicSpec]:
        """The merger's topics; every merger and sink ensures them, identically."""
        n, rf = partitions, replication_factor
        return [
            TopicSpec(self.edits.name, n, rf),
            TopicSpec(self.retry, n, rf),
            TopicSpec(self.state.name, n, rf, compacted=True),
            TopicSpec(self.person.name, n, rf, compacted=True),
            TopicSpec(self.conflicts.name, n, rf, retention_ms=FOREVER),
            TopicSpec(self.history.name, n, rf, retention_ms=FOREVER),
            quarantine_spec(n, rf),
        ]


def _hlc(record: Mapping[str, Any]) -> Hlc:
    return Hlc(record["wall_ms"], record["logical"], record["node"])


def _hlc_record(hlc: Hlc) -> dict[str, Any]:
    return {"wall_ms": hlc.wall_ms, "logical": hlc.logical, "node": hlc.node}


def edit_to_avro(edit: PersonEdit) -> dict[str, Any]:
    return {
        "person": edit.person,
        "origin": edit.origin,
        "event_id": edit.event_id,
        "hlc": _hlc_record(edit.hlc),
        "fields": dict(edit.fields),
        "resolves": edit.resolves,
        "actor": edit.actor,
        "link_to": edit.link_to,
        "former_keys": list(edit.former_keys),
        "person_row": edit.person_row,
        "learned": dict(edit.learned),
    }


def edit_from_avro(record: Mapping[str, Any]) -> PersonEdit:
    return PersonEdit(
        person=record["person"],
        origin=record["origin"],
        event_id=record["event_id"],
        hlc=_hlc(record["hlc"]),
        fields=record["fields"],
        resolves=record.get("resolves"),
        actor=record.get("actor"),
        link_to=record.get("link_to"),
        former_keys=tuple(record.get("former_keys", ())),
        person_row=record.get("person_row", False),
        learned=record.get("learned") or {},
    )


def field_edit_to_avro(edit: FieldEdit) -> dict[str, Any]:
    return {
        "value": edit.value,
        "origin": edit.origin,
        "event_id": edit.event_id,
        "hlc": _hlc_record(edit.hlc),
        "learned": edit.learned,
    }


def merged_values(person: MergedPerson, policies: Mapping[str, FieldPolicy]) -> dict[str, Any]:
    """The value of every field of ``person`` some edit has set."""
    return {
        name: outcome.value
        for name, outcome in person.view(policies).items()
        if outcome.provenance is not None
    }


def person_to_avro(person: MergedPerson, step: Mapping[str, Any]) -> dict[str, Any]:
    """The ``civsync.person`` record of ``person``, published by its history ``step``."""
    return {
        "person": person.state.person,
        "version": person.version,
        "values": step["values"],
        "ts_ms": step["ts_ms"],
        "former_keys": list(person.former_keys),
        "hash": step["hash"],
        "prev_hash": step["prev_hash"],
    }


def history_step(
    person: MergedPerson,
    values: dict[str, Any],
    *,
    published: bool,
    causes: list[PersonEdit],
    conflicts: list[Conflict],
    ts_ms: int,
) -> dict[str, Any]:
    """The ``civsync.person.history`` record of ``person`` after one transaction, chained
    after its last step (``person.chain``)."""
    record = {
        "person": person.state.person,
        "version": person.version,
        "ts_ms": ts_ms,
        "published": published,
        "values": values,
        "former_keys": list(person.former_keys),
        "moved_to": person.successor,
        "events": [
            {
                "origin": edit.origin,
                "event_id": edit.event_id,
                "hlc": _hlc_record(edit.hlc),
                "fields": {**edit.learned, **edit.fields},
                "learned": sorted(set(edit.learned) - set(edit.fields)),
                "actor": edit.actor,
                "resolves": edit.resolves,
                "link_to": edit.link_to,
                "former_keys": list(edit.former_keys),
            }
            for edit in causes
        ],
        "conflicts": [
            {
                "conflict_id": conflict.conflict_id,
                "field": conflict.field,
                "rule": str(conflict.rule),
                "decision": conflict.decision,
                "standing": (conflict.outcome or conflict.standing).value,
                "contested": conflict.contested.value,
                "actor": conflict.actor,
            }
            for conflict in conflicts
        ],
    }
    return seal(record, person.chain)


def conflict_to_avro(conflict: Conflict) -> dict[str, Any]:
    return {
        "conflict_id": conflict.conflict_id,
        "person": conflict.person,
        "field": conflict.field,
        "rule": str(conflict.rule),
        "decision": conflict.decision,
        "standing": field_edit_to_avro(conflict.standing),
        "contested": field_edit_to_avro(conflict.contested),
        "outcome": None if conflict.outcome is None else field_edit_to_avro(conflict.outcome),
        "actor": conflict.actor,
        "ts_ms": time.time_ns() // 1_000_000,
    }


# --- the state changelog ---


class _Events:
    """The events of a person's edits, each once, by index (the state record's ``events``)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._index: dict[tuple[str, str, Hlc], int] = {}

    def edit(self, edit: FieldEdit) -> dict[str, Any]:
        source = (edit.origin, edit.event_id, edit.hlc)
        index = self._index.get(source)
        if index is None:
            index = self._index[source] = len(self.records)
            self.records.append(
                {"origin": edit.origin, "event_id": edit.event_id, "hlc": _hlc_record(edit.hlc)}
            )
        return {"event": index, "value": edit.value, "learned": edit.learned}


def state_to_avro(person: MergedPerson) -> dict[str, Any]:
    """The ``civsync.merge.state`` record of ``person``."""
    events = _Events()
    fields = [
        {
            "field": name,
            "latest": [events.edit(e) for _, e in sorted(state.latest.items())],
            "earliest": None if state.earliest is None else events.edit(state.earliest),
        }
        for name, state in sorted(person.state.fields.items())
    ]
    open_conflicts = [
        {
            "field": name,
            "rule": str(c.rule),
            "decision": c.decision,
            "standing": events.edit(c.standing),
            "contested": events.edit(c.contested),
        }
        for name, c in sorted(person.open_conflicts.items())
    ]
    return {
        "person": person.state.person,
        "version": person.version,
        "events": events.records,
        "fields": fields,
        "open_conflicts": open_conflicts,
        "successor": person.successor,
        "former_keys": list(person.former_keys),
        "has_row": person.has_row,
        "chain": person.chain,
    }


def state_from_avro(record: Mapping[str, Any]) -> MergedPerson:
    person = record["person"]
    sources = [(e["origin"], e["event_id"], _hlc(e["hlc"])) for e in record["events"]]

    def edit(data: Mapping[str, Any], name: str) -> FieldEdit:
        origin, event_id, hlc = sources[data["event"]]
        return FieldEdit(name, data["value"], origin, hlc, event_id, data["learned"])

    fields = {}
    for data in record["fields"]:
        name, earliest = data["field"], data["earliest"]
        latest = {(e := edit(raw, name)).origin: e for raw in data["latest"]}
        fields[name] = FieldState(latest, None if earliest is None else edit(earliest, name))
    open_conflicts = {
        (name := c["field"]): Conflict(
            person,
            name,
            Rule(c["rule"]),
            c["decision"],
            edit(c["standing"], name),
            edit(c["contested"], name),
        )
        for c in record["open_conflicts"]
    }
    return MergedPerson(
        PersonState(person, fields),
        record["version"],
        open_conflicts,
        successor=record["successor"],
        former_keys=tuple(record["former_keys"]),
        has_row=record["has_row"],
        chain=record.get("chain", ""),
    )


def legacy_state_from_json(payload: bytes) -> MergedPerson:
    """A state as releases before the Avro changelog wrote it (JSON): they still load."""
    document = json.loads(payload)
    person = document["person"]

    def edit(data: list[Any]) -> FieldEdit:
        name, value, origin, wall, logical, node, event_id, *learned = data
        return FieldEdit(name, value, origin, Hlc(wall, logical, node), event_id, bool(learned))

    fields = {}
    for name, data in document["fields"].items():
        latest = {(e := edit(raw)).origin: e for raw in data["latest"]}
        earliest = None if data["earliest"] is None else edit(data["earliest"])
        fields[name] = FieldState(latest, earliest)
    open_conflicts = {
        name: Conflict(
            person, name, Rule(c["rule"]), c["decision"], edit(c["standing"]), edit(c["contested"])
        )
        for name, c in document["open"].items()
    }
    return MergedPerson(
        PersonState(person, fields),
        document["version"],
        open_conflicts,
        successor=document.get("successor"),
        former_keys=tuple(document.get("former_keys", ())),
        has_row=document.get("has_row", False),
    )
