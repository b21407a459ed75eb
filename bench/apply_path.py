"""The merger's and the sink's work per record, step by step, in one process, without services.

bench.sidebyside measures how much CPU each process uses per record; this says where, inside
them, it goes. For N people it builds the change events a capture writes for the bench's
16-column person row (a snapshot read, then an update with its old row), then runs every
record through the steps the merger and the sink take, with their own code, and times each:

- decode: fastavro decoding of the typed change event, its rows back to the published form
  (``connectors.capture.reader``: the merger's first step);
- step: ``engine.step.MergeStep.change``: the table mapping to person edits, the PIN checks,
  the merge of each edit into its person's state under the policies (one hop: the person's
  partition is the merger's own, so no edit is re-keyed);
- state: building and encoding the person's state changelog record (Avro, the provenance);
- person: building and encoding the lean civsync.person record (the merged values);
- sink decode: the sink's decoding of that record.

Records are encoded as the producer does (``connectors.kafka.avro_encoder``), with the garbage
collector tuned as the merger's (``connectors.resilience``).

Kafka, PostgreSQL and the producer calls are left out: sidebyside's figures include them.
Run from the repository root: ``python -m bench.apply_path [--people N] [--runs R]``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from bench.debezium import PERSON_FIELDS
from bench.report import summary, write
from connectors.capture.envelope import from_avro_row
from connectors.capture.publisher import TableTopic
from connectors.capture.reader import change_of
from connectors.kafka.avro_encoder import Encoder, compile_encoder
from connectors.merge.records import history_step, merged_values, person_to_avro, state_to_avro
from connectors.merge.settings import MergeSettings
from connectors.place_data import pre_2025_province_codes
from connectors.resilience import GC_THRESHOLDS
from engine.events import Change, ChangeEvent, Hlc, Op, Source, Value
from engine.mapping import PersonMapper, TableMapping
from engine.person import MergedPerson
from engine.policy import FieldPolicy
from engine.step import Effects, MergeStep
from schemas import load

STEPS = ("decode", "step", "history", "state", "person", "sink decode")
_PERSON = parse_schema(json.loads(load("person")))
_ENCODERS = {
    name: compile_encoder(load(name)) for name in ("person", "person_state", "person_version")
}
_TYPES = dict.fromkeys(PERSON_FIELDS, "text") | {
    "pin": "text",
    "version": "bigint",
    "updated_at": "timestamp with time zone",
}


def _encode(schema: Any, record: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, schema, record)
    return out.getvalue()


def _decode(schema: Any, payload: bytes) -> Any:
    return schemaless_reader(io.BytesIO(payload), schema, None)


def _history_step(person: MergedPerson, policies: Mapping[str, FieldPolicy]) -> dict[str, Any]:
    """The person's history step, as the merger builds and encodes it."""
    values = merged_values(person, policies)
    step = history_step(person, values, published=True, causes=[], conflicts=[], ts_ms=0)
    _encoder("person_version")(step)
    return step


def _person_record(person: MergedPerson, step: dict[str, Any]) -> bytes:
    return _encoder("person")(person_to_avro(person, step))


def _state_record(person: MergedPerson) -> bytes:
    return _encoder("person_state")(state_to_avro(person))


def _encoder(name: str) -> Encoder:
    encoder = _ENCODERS[name]
    if encoder is None:
        raise SystemExit(f"schema {name} has no compiled encoder: the producer would use fastavro")
    return encoder


class _People:
    """Every person, in memory (``engine.step.People``)."""

    def __init__(self) -> None:
        self.people: dict[str, MergedPerson] = {}
        self.changed: list[MergedPerson] = []

    def owns(self, person: str) -> bool:
        return True

    def get(self, person: str) -> MergedPerson | None:
        return self.people.get(person)

    def put(self, merged: MergedPerson, *, changed: bool) -> None:
        self.people[merged.state.person] = merged
        self.changed.append(merged)


def _change_event(n: int, op: Op, name: str) -> ChangeEvent:
    row: dict[str, Value] = {field: f"{field} of {n}" for field in PERSON_FIELDS}
    row |= {"pin": f"001080{n:06d}", "full_name": name, "version": int(op is Op.UPDATE)}
    row |= {"spouse": None, "date_of_death": None, "updated_at": "2026-11-23 17:00:00+00"}
    commit = 1_795_454_565_076 + n
    return ChangeEvent(
        event_id=f"civil:{n:016X}:{op}",
        op=op,
        source=Source("civil", "civil", "public", "person", commit, commit, n, commit),
        key={"pin": row["pin"]},
        before={**row, "full_name": f"Nguyễn Văn Hùng {n}", "version": 0}
        if op is Op.UPDATE
        else None,
        after=row,
        column_types={name: _TYPES[name] for name in row},
        hlc=Hlc(commit, 0, "civil"),
    )


def change_events(people: int) -> tuple[TableTopic, list[bytes]]:
    """The person table's topic and the encoded change events of ``people`` snapshot reads,
    then one rename of each, as capture writes them."""
    events = [_change_event(n, Op.READ, f"Nguyễn Văn Hùng {n}") for n in range(people)]
    events += [_change_event(n, Op.UPDATE, f"Nguyễn Văn Hùng {n} (đã sửa)") for n in range(people)]
    table = TableTopic.of("civsync.civil.person", events[0])
    schema = parse_schema(json.loads(table.topic.value_schema))
    encoded = [_encode(schema, table.record(e, e.source.commit_ts_ms, "civsync")) for e in events]
    return table, encoded


def merged_people(people: int) -> list[MergedPerson]:
    """``people`` people as the merger holds them after a snapshot read and an update each."""
    table, payloads = change_events(people)
    envelope = json.loads(table.topic.value_schema)
    schema = parse_schema(envelope)
    published = from_avro_row(envelope["fields"][0]["type"][1])
    owned, step = _People(), _step()
    for payload in payloads:
        step.change(change_of(_decode(schema, payload), published, published), owned, Effects())
    return list(owned.people.values())


def _step() -> MergeStep:
    """The merge step of the bench's person table, under the default policies."""
    settings = MergeSettings()
    return MergeStep(
        PersonMapper(
            [TableMapping("civil", "public.person", "pin", {f: f for f in PERSON_FIELDS})]
        ),
        settings.policies(),
        settings.required,
        pre_2025_province_codes(),
    )


def one_run(table: TableTopic, payloads: list[bytes]) -> dict[str, float]:
    """µs per record of each step, over ``payloads`` of ``table``'s topic."""
    envelope = json.loads(table.topic.value_schema)
    schema = parse_schema(envelope)
    published = from_avro_row(envelope["fields"][0]["type"][1])  # before: ["null", Value]

    def decode(payload: bytes) -> Change:
        return change_of(_decode(schema, payload), published, published)

    step = _step()
    policies = step.policies
    people = _People()
    spent = dict.fromkeys(STEPS, 0.0)
    clock = time.perf_counter

    def timed(step: str, work: Callable[..., Any], *args: Any) -> Any:
        started = clock()
        result = work(*args)
        spent[step] += clock() - started
        return result

    for payload in payloads:
        change = timed("decode", decode, payload)
        timed("step", step.change, change, people, Effects())
        for person in people.changed:
            history = timed("history", _history_step, person, policies)
            timed("state", _state_record, person)
            record = timed("person", _person_record, person, history)
            timed("sink decode", _decode, _PERSON, record)
        people.changed.clear()
    return {step: 1e6 * seconds / len(payloads) for step, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.people, args.runs = 500, 1
    table, payloads = change_events(args.people)
    gc.freeze()  # as every long-running part does (connectors.resilience)
    gc.set_threshold(*GC_THRESHOLDS)
    runs = [one_run(table, payloads) for _ in range(args.runs)]
    result: dict[str, Any] = {
        "workload": {"people": args.people, "records": len(payloads), "runs": args.runs},
        "us_per_record": {step: summary([r[step] for r in runs]) for step in STEPS},
    }
    result["us_per_record_total"] = summary([sum(r.values()) for r in runs])
    write("apply_path", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
