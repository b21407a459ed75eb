"""``civsync demo``: both stores, 10,000 people with mismatches, the engine, live edits, a summary.

The demo owns its databases (``civsync_demo_civil`` and ``civsync_demo_population`` on the
two store servers), its replication slots and its topics (prefix ``civsync-demo-<run>``).
It recreates all of them on every run and touches nothing else. Its summary counts the
conflicts by cause (``_cause``), so that a reader sees none come of values that are equal
(tone marks, look-alike letters, a place in the other code list, a less precise date).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql
from rich.console import Console
from rich.table import Table

from civsync.config import CivsyncSettings
from civsync.generator import GeneratedPerson, Generator, PinReissue
from civsync.runner import EngineProcesses, engine_config
from civsync.services import LocalServices
from connectors.capture.slot import ReplicationSlot
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics
from connectors.merge.settings import MergeSettings
from connectors.merge.steward import history
from connectors.migrations import recreate
from connectors.postgres import Connection, connect
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from connectors.settings import StoreSettings
from engine import dates
from engine.errors import CivsyncError
from engine.normal import equivalent
from engine.places import PLACE_FIELDS

DATABASES = {"civil": "civsync_demo_civil", "population": "civsync_demo_population"}
TABLES = {"civil": "person", "population": "citizen"}
_PERSON, _CITIZEN = MergeSettings().person_tables()
SHARED = sorted(set(_PERSON.columns) & set(_CITIZEN.columns))
_PLACE_FIELDS = ("place_of_birth", "hometown", "permanent_residence")
_TOPIC_PREFIX = "civsync-demo"
_QUIET_CHECKS = 3  # seconds with nothing new on civsync.person and no capture lag


class DemoError(CivsyncError):
    """The demo could not finish; the message says where."""


@dataclass
class Demo:
    settings: CivsyncSettings
    run_dir: Path
    console: Console
    people: int = 10_000
    mismatch: float = 0.05
    edits: int = 300
    registrations: int = 30  # of each kind: births without a PIN, deaths, corrections
    timeout_s: float = 240.0
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    def run(self) -> None:
        self._step("services", self._services)
        stores = {name: self._store(name) for name in DATABASES}
        self._step("stores", lambda: self._reset(stores))
        people = self._step("seed", lambda: self.seed(stores))
        prefix = f"{_TOPIC_PREFIX}-{int(time.time())}"
        engine = EngineProcesses(
            engine_config(self.run_dir / "demo" / "civsync.toml", self.settings, DATABASES, prefix),
            self.run_dir / "demo" / "logs",
            env={"CIVSYNC_LOG_LEVEL": os.environ.get("CIVSYNC_LOG_LEVEL", "WARNING")},
            extra={f"capture-{name}": ["--slot", _slot(name)] for name in DATABASES},
            kafka_admin=self.settings.kafka,
        )
        engine.start()
        try:
            self._step("initial sync", lambda: self._settle(stores, engine, prefix))
            self._step("live edits", lambda: self._edit(stores, people))
            newborns = self._step("registrations", lambda: self._register(stores, people))
            self._step("edits synced", lambda: self._settle(stores, engine, prefix))
            self._step("PINs issued", lambda: self._issue_pins(stores))
            self._step("PINs re-issued", lambda: self._reissue_pins(stores, people))
            self._step("PINs synced", lambda: self._settle(stores, engine, prefix))
            self._summary(stores, prefix, newborns, people)
        finally:
            engine.stop()

    # --- steps ---

    def _step(self, name: str, action: Callable[[], Any]) -> Any:
        began = time.monotonic()
        with self.console.status(f"[cyan]{name}[/cyan] …"):
            result = action()
        self.timings[name] = time.monotonic() - began
        self.console.print(f"[green]✓[/green] {name} ({self.timings[name]:.1f}s)")
        return result

    def _services(self) -> None:
        """The local services up; from here on Kafka is reached over its SASL_SSL listener,
        the demo as ``admin`` and each engine part as its own user, with only its ACLs."""
        services = LocalServices(self.run_dir, self.settings)
        services.up(progress=self.console.log)
        if not self.settings.kafka.logs_in:
            kafka = services.kafka().admin_settings(self.settings.kafka)
            self.settings = self.settings.model_copy(update={"kafka": kafka})

    def _store(self, name: str) -> StoreSettings:
        return self.settings.stores()[name].model_copy(update={"dbname": DATABASES[name]})

    def _reset(self, stores: dict[str, StoreSettings]) -> None:
        """Fresh demo databases, topics and merger state."""
        shutil.rmtree(self.run_dir / "demo" / "state", ignore_errors=True)
        for name, store in stores.items():
            recreate(self.settings.stores()[name], store.dbname, name)
        topics = TopicAdmin(self.settings.kafka)
        topics.delete(sorted(t for t in topics.names() if t.startswith(_TOPIC_PREFIX)))

    def seed(self, stores: dict[str, StoreSettings]) -> list[GeneratedPerson]:
        """Both stores filled with the demo's people, their acts and mismatches (also used
        by bench.initial_sync)."""
        people = list(Generator(mismatch=self.mismatch).people(self.people))
        households = {p.household: p.population["permanent_residence"] for p in people}
        with connect(stores["population"]) as conn:
            _copy(conn, "household", ["id", "address"], households.items())
            _copy_rows(conn, "citizen", [p.population for p in people])
            conn.commit()
        with connect(stores["civil"]) as conn:
            _copy_rows(conn, "person", [p.civil for p in people])
            ids = {str(pin): int(str(i)) for pin, i in conn.execute("SELECT pin, id FROM person")}
            births = [{**p.birth_act, "person_id": ids[p.pin]} for p in people]
            _copy_rows(conn, "birth_registration", births)
            marriages = [
                {
                    **act,
                    "spouse_a_id": ids[act["spouse_a_pin"]],
                    "spouse_b_id": ids[act["spouse_b_pin"]],
                }
                for p in people
                if (act := p.marriage_act) is not None
            ]
            _copy_rows(conn, "marriage_registration", marriages)
            deaths = [
                {**act, "person_id": ids[p.pin]} for p in people if (act := p.death_act) is not None
            ]
            _copy_rows(conn, "death_registration", deaths)
            conn.commit()
        legacy = sum(p.legacy for p in people)
        mismatched = Counter(p.mismatch for p in people if p.mismatch)
        self.console.print(
            f"  seeded {len(people):,} people in both stores: {legacy} legacy records with gaps,"
            f" {sum(mismatched.values())} deliberate mismatches ({_counts(mismatched)}),"
            f" {_counts(_equal_values(people)) or 'no'} equal values recorded otherwise;"
            f" {len(births):,} birth, {len(marriages):,} marriage and {len(deaths):,} death acts"
        )
        return people

    def _settle(
        self, stores: dict[str, StoreSettings], engine: EngineProcesses, prefix: str
    ) -> None:
        """Until both slots are caught up and the merger and both sinks have read everything
        and committed nothing new for 3 s (a transactional topic leaves a group one marker
        per partition behind, which is allowed for)."""
        groups = [f"{prefix}-merger", *(f"{prefix}-sink-{name}" for name in stores)]
        allowed = self.settings.merge.partitions
        topics = TopicAdmin(self.settings.kafka)
        deadline, last, quiet = time.monotonic() + self.timeout_s, None, 0
        while quiet < _QUIET_CHECKS:
            if time.monotonic() > deadline:
                raise DemoError(f"the engine did not settle within {self.timeout_s:.0f}s")
            dead = engine.exited()
            if dead:
                logs = engine.log_dir
                raise DemoError(f"engine processes exited: {dead}; see the logs in {logs}")
            time.sleep(1.0)
            lag = sum(_slot_lag(store, name) for name, store in stores.items())
            progress = [topics.group_progress(group) for group in groups]
            read_all = all(committed > 0 and behind <= allowed for committed, behind in progress)
            quiet = quiet + 1 if (lag == 0 and read_all and progress == last) else 0
            last = progress

    def _edit(self, stores: dict[str, StoreSettings], people: list[GeneratedPerson]) -> None:
        """Live edits on both sides: civil-status renames, population moves, and population
        edits of names (which civil-status owns: each becomes a conflict held for a steward)."""
        rng = random.Random(7)  # noqa: S311 - demo data
        chosen = rng.sample(people, min(self.edits, len(people)))
        places = Generator(seed=8)
        thirds = len(chosen) // 3
        with connect(stores["civil"]) as civil, connect(stores["population"]) as population:
            for person in chosen[:thirds]:
                civil.execute(
                    "UPDATE person SET full_name = %s WHERE pin = %s",
                    (person.civil["full_name"] + " Anh", person.pin),
                )
            for person in chosen[thirds : 2 * thirds]:
                population.execute(
                    "UPDATE citizen SET permanent_residence = %s WHERE pin = %s",
                    (places.residence(), person.pin),
                )
            for person in chosen[2 * thirds :]:
                population.execute(
                    "UPDATE citizen SET full_name = upper(full_name) WHERE pin = %s",
                    (person.pin,),
                )
            civil.commit()
            population.commit()
        self.console.print(
            f"  {thirds} renames in civil-status, {thirds} moves and"
            f" {len(chosen) - 2 * thirds} name edits in the population store"
        )

    def _register(
        self, stores: dict[str, StoreSettings], people: list[GeneratedPerson]
    ) -> list[int]:
        """Registrations in civil-status: births without a PIN (the population store issues
        one later), deaths, corrections of names, and the corrections of sex or birth year
        that lead to a re-issued PIN; the ids of the newborns."""
        rng, n = random.Random(9), self.registrations  # noqa: S311 - demo data
        newborns = list(Generator(seed=10, legacy=0.0, mismatch=0.0).people(n))
        alive = [p for p in people if p.population["date_of_death"] is None]
        dying = rng.sample([p for p in alive if not (p.legacy or p.reissue)], 2 * n)
        ids = []
        with connect(stores["civil"]) as civil:
            for child in newborns:
                act = {k: v for k, v in child.birth_act.items() if k != "pin"}
                row = {k: v for k, v in child.civil.items() if k not in {"pin", "spouse"}}
                new_id = _insert(civil, "person", row)
                _insert(civil, "birth_registration", {**act, "person_id": new_id})
                ids.append(new_id)
            for person in dying[:n]:
                _insert(civil, "death_registration", {
                    **_act_of(person, f"D{person.pin}", "2025-10-01"), "pin": person.pin,
                    "person_id": _id_of(civil, person.pin), "date_of_death": "2025-09",
                })  # fmt: skip
            for person in dying[n:]:
                name = person.civil["full_name"]
                _insert(civil, "correction", {
                    **_act_of(person, f"C{person.pin}", "2025-10-02"), "pin": person.pin,
                    "person_id": _id_of(civil, person.pin), "corrects": "birth_registration",
                    "corrected_id": _birth_act_of(civil, person.pin), "field": "full_name",
                    "old_value": name, "new_value": f"{name} Thị", "reason": "keying error",
                })  # fmt: skip
            reissued = _reissues(people)
            for reissue in reissued:
                _insert(civil, "correction", {
                    **reissue.correction, "person_id": _id_of(civil, reissue.old_pin),
                    "corrected_id": _birth_act_of(civil, reissue.old_pin),
                })  # fmt: skip
            civil.commit()
        self.console.print(
            f"  {n} births without a PIN, {n} deaths and {n} name corrections registered;"
            f" {len(reissued)} corrections of sex or birth year, whose PINs are re-issued later"
        )
        return ids

    def _issue_pins(self, stores: dict[str, StoreSettings]) -> None:
        with connect(stores["population"]) as population:
            row = population.execute("SELECT issue_pins('001')").fetchone()
            population.commit()
        self.console.print(f"  the population store issued {row[0] if row else 0} PINs")

    def _reissue_pins(
        self, stores: dict[str, StoreSettings], people: list[GeneratedPerson]
    ) -> None:
        """The population store re-issues the PINs of the people whose sex or birth year
        civil-status corrected: the new PIN in ``citizen`` and the old one in ``pin_history``,
        in one transaction each, as the profile does."""
        reissued = _reissues(people)
        with connect(stores["population"]) as population:
            for reissue in reissued:
                with population.transaction():
                    population.execute(
                        sql.SQL("UPDATE citizen SET pin = %s, {} = %s WHERE pin = %s").format(
                            sql.Identifier(reissue.field)
                        ),
                        (reissue.new_pin, reissue.value, reissue.old_pin),
                    )
                    population.execute(
                        "INSERT INTO pin_history (old_pin, new_pin, changed_on, reason)"
                        " VALUES (%s, %s, %s, %s)",
                        (reissue.old_pin, reissue.new_pin, reissue.changed_on, reissue.reason),
                    )
        self.console.print(f"  the population store re-issued {len(reissued)} PINs")

    # --- the summary ---

    def _summary(
        self,
        stores: dict[str, StoreSettings],
        prefix: str,
        newborns: list[int],
        people: list[GeneratedPerson],
    ) -> None:
        # First, as the engine settled: WAL that other databases of the servers write while
        # the summary reads the topics counts as lag until capture next confirms.
        lags = {name: _slot_lag(store, name) for name, store in stores.items()}
        rows = {name: _shared_rows(store, TABLES[name]) for name, store in stores.items()}
        civil, population = rows["civil"], rows["population"]
        disagreeing = Counter(
            name
            for pin in civil.keys() | population.keys()
            for name in SHARED
            if (civil.get(pin) or {}).get(name) != (population.get(pin) or {}).get(name)
        )
        agreeing = sum(
            1 for pin in civil.keys() & population.keys() if civil[pin] == population[pin]
        )
        table = Table(title="civsync demo", show_header=False)
        table.add_row("people in both stores", f"{len(civil.keys() & population.keys()):,}")
        table.add_row("people in agreement on every shared field", f"{agreeing:,}")
        table.add_row("disagreements left, by field", _counts(disagreeing) or "none")
        with SchemaRegistry(self.settings.registry) as registry:
            conflicts = history(self.settings.kafka, registry, MergeTopics(prefix))
            quarantine = _quarantined_since(self.settings, registry, self.started)
        table.add_row("equal values seeded in two forms", _counts(_equal_values(people)) or "none")
        causes = Counter(
            (_cause(c.records[0]), c.latest["field"], c.latest["decision"])
            for c in conflicts.values()
        )
        table.add_row("conflicts by cause, field and decision", _by_cause(causes))
        table.add_row("quarantined, by reason", _counts(quarantine) or "none")
        with connect(stores["civil"], autocommit=True) as conn:
            written_back = conn.execute(
                "SELECT count(*) FROM person WHERE id = ANY(%s) AND pin IS NOT NULL", (newborns,)
            ).fetchone()
        table.add_row(
            "births without a PIN: PIN issued and written back",
            f"{written_back[0] if written_back else 0} of {len(newborns)}",
        )
        reissued = _reissues(people)
        moved = sum(
            r.new_pin in civil and r.new_pin in population
            and r.old_pin not in civil and r.old_pin not in population
            for r in reissued
        )  # fmt: skip
        table.add_row("PINs re-issued: one person under the new PIN", f"{moved} of {len(reissued)}")
        table.add_row(
            "places remapped to 2025 units, by quality", _counts(_place_qualities(stores["civil"]))
        )
        table.add_row("capture lag (bytes of WAL)", _counts(Counter(lags)))
        table.add_row("timings", ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()))
        self.console.print(table)
        self.console.print(
            "Held conflicts wait for a steward: "
            f"civsync conflicts list --config {self.run_dir / 'demo' / 'civsync.toml'}"
        )


# Causes of a conflict between values that are equal: none may be raised.
_EQUAL = {
    "normal form": "tone marks, look-alike letters or spaces",
    "precision": "dates of different precision",
    "code list": "one place in two code lists",
}


def _cause(raised: Mapping[str, Any]) -> str:
    """Why a conflict was raised, from its first record: its two values are equal in the
    normal form, compatible dates or one place in two code lists (``_EQUAL``: none should
    be), a place for a steward to check (a review, by the place's quality), or they disagree."""
    field, standing = raised["field"], raised["standing"]["value"]
    if raised["decision"] == "review":
        return f"place for a steward ({json.loads(standing).get('quality')})"
    contested = raised["contested"]["value"]
    if not equivalent(field, standing, contested):
        compatible = field in dates.DATE_FIELDS and dates.compatible(standing, contested)
        return _EQUAL["precision"] if compatible else "real disagreement"
    return _EQUAL["code list"] if field in PLACE_FIELDS else _EQUAL["normal form"]


def _by_cause(causes: Counter[tuple[str, str, str]]) -> str:
    """Each cause of ``_EQUAL`` with its count (zero too), then the others by field and
    decision."""
    lines = [f"{c}: {sum(n for (k, _, _), n in causes.items() if k == c)}" for c in _EQUAL.values()]
    lines += [
        f"{cause} / {field} / {decision}: {n:,}"
        for (cause, field, decision), n in sorted(causes.items())
        if cause not in _EQUAL.values()
    ]
    return "\n".join(lines)


def _reissues(people: list[GeneratedPerson]) -> list[PinReissue]:
    return [p.reissue for p in people if p.reissue]


def _equal_values(people: list[GeneratedPerson]) -> Counter[str]:
    """How many seeded people have a value the two stores record differently but equally: the
    generator's variants, and legacy birth dates less precise than the population store's."""
    kinds = Counter(p.variant for p in people if p.variant)
    kinds["less precise birth date"] = sum(p.legacy for p in people)
    return +kinds  # only those there are


def _act_of(person: GeneratedPerson, number: str, registered_on: str) -> dict[str, Any]:
    """The columns every act has, for a new act about ``person`` in their birth commune."""
    birth = person.birth_act
    return {
        "book": birth["book"],
        "number": number,
        "registered_on": registered_on,
        "commune_code": birth["commune_code"],
        "commune_code_list": birth["commune_code_list"],
    }


def _insert(conn: Connection, table: str, row: dict[str, Any]) -> int:
    """Insert ``row`` into ``table``; the new row's id."""
    columns = list(row)
    found = conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        ),
        [row[c] for c in columns],
    ).fetchone()
    assert found is not None  # noqa: S101 - RETURNING gives the row
    return int(str(found[0]))


def _id_of(conn: Connection, pin: str) -> int:
    found = conn.execute("SELECT id FROM person WHERE pin = %s", (pin,)).fetchone()
    assert found is not None  # noqa: S101 - seeded
    return int(str(found[0]))


def _birth_act_of(conn: Connection, pin: str) -> int:
    found = conn.execute("SELECT id FROM birth_registration WHERE pin = %s", (pin,)).fetchone()
    assert found is not None  # noqa: S101 - seeded for everyone not legacy
    return int(str(found[0]))


def _copy(conn: Connection, table: str, columns: list[str], rows: Iterable[Iterable[Any]]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(tuple(row))


def _copy_rows(conn: Connection, table: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    _copy(conn, table, columns, ([row[c] for c in columns] for row in rows))


def _slot_lag(store: StoreSettings, name: str) -> int:
    with connect(store, autocommit=True) as conn:
        state = ReplicationSlot(_slot(name)).state(conn)
    return 0 if state is None else state.lag_bytes


def _slot(store: str) -> str:
    return f"civsync_demo_{store}"


def _shared_rows(store: StoreSettings, table: str) -> dict[str, dict[str, Any]]:
    columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in SHARED)
    with connect(store, autocommit=True) as conn:
        cursor = conn.execute(
            sql.SQL("SELECT pin, {} FROM {} WHERE pin IS NOT NULL").format(
                columns, sql.Identifier(table)
            )
        )
        return {str(row[0]): dict(zip(SHARED, row[1:], strict=True)) for row in cursor}


def _place_qualities(store: StoreSettings) -> Counter[str]:
    qualities: Counter[str] = Counter()
    with connect(store, autocommit=True) as conn:
        for name in _PLACE_FIELDS:
            query = sql.SQL("SELECT {} ->> 'quality', count(*) FROM person GROUP BY 1").format(
                sql.Identifier(name)
            )
            for quality, count in conn.execute(query):
                qualities[str(quality)] += int(str(count))
    return qualities


def _quarantined_since(
    settings: CivsyncSettings, registry: SchemaRegistry, started: float
) -> Counter[str]:
    since_ms = int((time.time() - (time.monotonic() - started)) * 1000)
    decoder = AvroDecoder(registry)
    reasons: Counter[str] = Counter()
    if QUARANTINE_TOPIC not in TopicAdmin(settings.kafka).names():
        return reasons
    for message in read_to_end(settings.kafka, QUARANTINE_TOPIC):
        record = decoder.decode(message.value() or b"", QUARANTINE_TOPIC)
        if record["ts_ms"] >= since_ms:
            reasons[record["reason"]] += 1
    return reasons


def _counts(counter: Counter[Any]) -> str:
    return ", ".join(f"{key}: {n:,}" for key, n in counter.most_common())
