"""The merger's records: Avro for the published topics, JSON for its own state changelog.

Avro shapes are ``schemas/person_edit.avsc``, ``person.avsc`` and ``conflict.avsc``. The
state changelog (``civsync.merge.state``) is internal: JSON of ``engine.person.MergedPerson``,
the latest edit per origin and field plus the earliest seen, so a restarted merger resumes
exactly where the last committed transaction left it.
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
from engine.events import Hlc
from engine.mapping import PersonEdit
from engine.merge import Conflict, FieldEdit, FieldState, PersonState
from engine.person import MergedPerson
from engine.policy import FieldPolicy, Rule
from schemas import load

_PERSON_KEY, _PERSON_EDIT, _PERSON = load("person_key"), load("person_edit"), load("person")
_CONFLICT_KEY, _CONFLICT = load("conflict_key"), load("conflict")


@dataclass(frozen=True)
class MergeTopics:
    """The merger's topics under one prefix (``civsync`` in production; tests use their own).

    ``edits`` and ``state`` are internal and co-partitioned: partition p of the state
    changelog holds the people whose edits arrive on partition p.
    """

    prefix: str = "civsync"

    @cached_property
    def edits(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.merge.edits", _PERSON_KEY, _PERSON_EDIT)

    @property
    def state(self) -> str:
        return f"{self.prefix}.merge.state"

    @cached_property
    def person(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.person", _PERSON_KEY, _PERSON)

    @cached_property
    def conflicts(self) -> AvroTopic:
        return AvroTopic(f"{self.prefix}.conflicts", _CONFLICT_KEY, _CONFLICT)

    def specs(self, partitions: int, replication_factor: int = 1) -> list[TopicSpec]:
        """The merger's topics; every merger and sink ensures them, identically."""
        n, rf = partitions, replication_factor
        return [
            TopicSpec(self.edits.name, n, rf),
            TopicSpec(self.state, n, rf, compacted=True),
            TopicSpec(self.person.name, n, rf, compacted=True),
            TopicSpec(self.conflicts.name, n, rf, retention_ms=FOREVER),
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


def person_to_avro(person: MergedPerson, policies: Mapping[str, FieldPolicy]) -> dict[str, Any]:
    """The ``civsync.person`` record of ``person``: every field's value and provenance."""
    fields = {}
    for name, outcome in sorted(person.view(policies).items()):
        if outcome.provenance is None:
            continue
        conflict = person.open_conflicts.get(name)
        fields[name] = {
            "value": outcome.value,
            "rule": str(policies[name].rule),
            "standing": field_edit_to_avro(outcome.provenance),
            "held": None if outcome.held is None else field_edit_to_avro(outcome.held),
            "conflict_id": None if conflict is None else conflict.conflict_id,
        }
    return {
        "person": person.state.person,
        "version": person.version,
        "fields": fields,
        "ts_ms": time.time_ns() // 1_000_000,
        "former_keys": list(person.former_keys),
    }


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


# --- the state changelog (internal JSON) ---


def _field_edit_json(edit: FieldEdit) -> list[Any]:
    hlc = edit.hlc
    data = [edit.field, edit.value, edit.origin, hlc.wall_ms, hlc.logical, hlc.node, edit.event_id]
    return [*data, True] if edit.learned else data  # older states, without the flag, still load


def _field_edit(data: list[Any]) -> FieldEdit:
    name, value, origin, wall, logical, node, event_id, *learned = data
    return FieldEdit(name, value, origin, Hlc(wall, logical, node), event_id, bool(learned))


def _conflict_json(conflict: Conflict) -> dict[str, Any]:
    return {
        "rule": str(conflict.rule),
        "decision": conflict.decision,
        "standing": _field_edit_json(conflict.standing),
        "contested": _field_edit_json(conflict.contested),
    }


def state_to_json(person: MergedPerson) -> bytes:
    fields = {
        name: {
            "latest": [_field_edit_json(e) for _, e in sorted(state.latest.items())],
            "earliest": None if state.earliest is None else _field_edit_json(state.earliest),
        }
        for name, state in sorted(person.state.fields.items())
    }
    document = {
        "person": person.state.person,
        "version": person.version,
        "fields": fields,
        "open": {name: _conflict_json(c) for name, c in sorted(person.open_conflicts.items())},
        "successor": person.successor,
        "former_keys": list(person.former_keys),
        "has_row": person.has_row,
    }
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def state_from_json(payload: bytes) -> MergedPerson:
    document = json.loads(payload)
    person = document["person"]
    fields = {}
    for name, data in document["fields"].items():
        latest = {(e := _field_edit(raw)).origin: e for raw in data["latest"]}
        earliest = None if data["earliest"] is None else _field_edit(data["earliest"])
        fields[name] = FieldState(latest, earliest)
    open_conflicts = {
        name: Conflict(
            person,
            name,
            Rule(c["rule"]),
            c["decision"],
            _field_edit(c["standing"]),
            _field_edit(c["contested"]),
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
