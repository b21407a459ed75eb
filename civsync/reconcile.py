"""``civsync reconcile``: compare both stores field by field, write the mismatches, repair.

Values are compared in the merger's normal form (``engine.normal``), so a name written with
the other tone-mark placement, or a place recorded in the other code list, is no mismatch.

Each store's mapped person table is read through a server-side cursor ordered by PIN, so the
comparison (``engine.reconcile``) holds one row per side at a time. Mismatches go to
``mismatches.csv`` and ``mismatches.jsonl`` in the output folder. ``repair`` sends both stores'
values of every mismatching field to the merger as edits from their stores, clocked now, so
the field policies decide and the sinks apply the outcome; a disagreement the policy holds
for a steward shows up as a held conflict.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from psycopg import sql

from civsync.config import CivsyncSettings
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroProducer
from connectors.merge.records import MergeTopics, edit_to_avro
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from connectors.settings import StoreSettings
from engine.errors import ConfigError
from engine.events import Value
from engine.hlc import HybridClock
from engine.mapping import PersonEdit, TableMapping, person_partition
from engine.reconcile import MISSING, Mismatch, Row, compare

_FETCH = 5_000


@dataclass
class Report:
    people: Counter[str] = field(default_factory=Counter)  # rows read, by store
    mismatches: Counter[str] = field(default_factory=Counter)  # by field
    repaired_people: int = 0
    seconds: float = 0.0

    @property
    def rows_per_s(self) -> float:
        return sum(self.people.values()) / self.seconds if self.seconds else 0.0


def _mappings(settings: CivsyncSettings) -> tuple[TableMapping, TableMapping, list[str]]:
    stores = [m.store for m in settings.merge.person_tables()]
    by_store = {m.store: m for m in settings.merge.person_tables()}
    if sorted(stores) != ["civil", "population"]:
        raise ConfigError("reconcile needs one mapped person table in each store ([merge.tables])")
    civil, population = by_store["civil"], by_store["population"]
    return civil, population, sorted(set(civil.columns) & set(population.columns))


def _rows(
    store: StoreSettings, mapping: TableMapping, fields: list[str], read: Callable[[], None]
) -> Iterator[Row]:
    schema, _, table = mapping.table.partition(".")
    key = sql.Identifier(mapping.person_column)
    columns = sql.SQL(", ").join(
        sql.SQL("{}::text").format(sql.Identifier(mapping.columns[name])) for name in fields
    )
    query = sql.SQL(
        "SELECT {key}::text, {columns} FROM {table} WHERE {key} IS NOT NULL"
        ' ORDER BY {key} COLLATE "C"'  # byte order: the order Python compares PINs in
    ).format(key=key, columns=columns, table=sql.Identifier(schema, table))
    with connect(store) as conn, conn.cursor(name="civsync_reconcile") as cursor:
        cursor.itersize = _FETCH
        cursor.execute(query)
        for pin, *values in cursor:
            read()
            yield (
                str(pin),
                {
                    name: None if v is None else str(v)
                    for name, v in zip(fields, values, strict=True)
                },
            )


def reconcile(
    settings: CivsyncSettings,
    out: Path,
    *,
    repair: bool = False,
    progress: Callable[[Report], None] = lambda _: None,
) -> Report:
    """Compare, write ``out``/mismatches.csv and .jsonl, and repair if asked."""
    civil, population, fields = _mappings(settings)
    report, started = Report(), time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    repairs = _Repairs(settings) if repair else None

    def counted(store: str) -> Callable[[], None]:
        def read() -> None:
            report.people[store] += 1
            if report.people[store] % _FETCH == 0:
                progress(report)

        return read

    with (
        (out / "mismatches.csv").open("w", newline="", encoding="utf-8") as csv_file,
        (out / "mismatches.jsonl").open("w", encoding="utf-8") as json_file,
    ):
        writer = csv.writer(csv_file)
        writer.writerow(["pin", "field", "civil", "population"])
        mismatches = compare(
            _rows(settings.civil, civil, fields, counted("civil")),
            _rows(settings.population, population, fields, counted("population")),
            fields,
        )
        for mismatch in mismatches:
            report.mismatches[mismatch.field] += 1
            writer.writerow([mismatch.pin, mismatch.field, mismatch.civil, mismatch.population])
            json_file.write(json.dumps(mismatch.__dict__, ensure_ascii=False) + "\n")
            if repairs is not None:
                repairs.add(mismatch)
    if repairs is not None:
        report.repaired_people = repairs.send()
    report.seconds = time.monotonic() - started
    progress(report)
    return report


class _Repairs:
    """Collects each mismatching person's differing fields, then sends them as edits."""

    def __init__(self, settings: CivsyncSettings) -> None:
        self._settings = settings
        self._fields: dict[str, dict[str, dict[str, Value]]] = {}  # pin -> store -> fields

    def add(self, mismatch: Mismatch) -> None:
        if mismatch.field == MISSING:
            return  # a person one store lacks is the sinks' to create, once either side edits
        sides = self._fields.setdefault(mismatch.pin, {"civil": {}, "population": {}})
        sides["civil"][mismatch.field] = mismatch.civil
        sides["population"][mismatch.field] = mismatch.population

    def send(self) -> int:
        topics = MergeTopics(self._settings.merge.topic_prefix)
        partitions = TopicAdmin(self._settings.kafka).describe(topics.edits.name).partitions
        run = uuid.uuid4().hex[:12]
        with SchemaRegistry(self._settings.registry) as registry:
            producer = AvroProducer(self._settings.kafka, registry)
            for pin, sides in self._fields.items():
                for store, values in sides.items():
                    clock = HybridClock(f"reconcile:{store}")
                    edit = PersonEdit(
                        pin, store, f"reconcile:{run}:{store}:{pin}", clock.tick(), values
                    )
                    producer.produce(
                        topics.edits,
                        {"person": pin},
                        edit_to_avro(edit),
                        partition=person_partition(pin, partitions),
                    )
            producer.flush()
        return len(self._fields)
