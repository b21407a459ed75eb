"""The migrated profile's stores and the whole engine (`civsync run`'s parts) for one test:
five people seeded in both stores (one with a birth act), synced before the test starts."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from civsync.config import CivsyncSettings
from civsync.runner import EngineProcesses, engine_config
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.avro import AvroDecoder
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics
from connectors.migrations import drop, recreate
from connectors.postgres import Connection, connect
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from tests.integration.merge_support import wait_for

ANH, BINH, CHI, DUNG, EM = (
    "001090000101",  # male, 1990
    "001090000102",
    "001192000103",  # female, 1992
    "001085000104",
    "001195000105",
)
EM_REISSUED = "001095000905"  # after a sex re-determination
SPLIT: dict[str, Any] = {"text": "xã Tân Lập", "code": "25846", "code_list": "pre-2025"}
SPLIT |= {"quality": "split-default", "current": {"province_code": "37", "ward_code": "x"}}
ACT = {"book": "01", "registered_on": "2025-08-01", "commune_code": "00001"}
ACT |= {"commune_code_list": "pre-2025"}


@dataclass
class Profile:
    civil: Connection
    population: Connection
    prefix: str
    settings: CivsyncSettings
    registry: SchemaRegistry
    engine: EngineProcesses  # supervised: a part that exits is started again

    @property
    def config(self) -> Path:
        assert self.engine.config is not None
        return self.engine.config

    def insert(self, conn: Connection, table: str, **row: Any) -> Any:
        columns = ", ".join(row)
        marks = ", ".join(["%s"] * len(row))
        values = [json.dumps(v) if isinstance(v, dict) else v for v in row.values()]
        found = conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING *",  # noqa: S608 - test names
            values,
        ).fetchone()
        return None if found is None else found[0]

    def one(self, conn: Connection, query: str, *args: Any) -> Any:
        row = conn.execute(query, args).fetchone()
        return row if row is None or len(row) > 1 else row[0]

    def quarantined(self, reason: str) -> list[dict[str, Any]]:
        decoder = AvroDecoder(self.registry)
        records = [
            decoder.decode(m.value() or b"", "quarantine")
            for m in read_to_end(self.settings.kafka, QUARANTINE_TOPIC)
        ]
        return [r for r in records if r["reason"] == reason]

    def person_records(self, person: str) -> list[dict[str, Any]]:
        decoder = AvroDecoder(self.registry)
        topic = MergeTopics(self.prefix).person.name
        return [
            decoder.decode(value, topic)
            for m in read_to_end(self.settings.kafka, topic)
            if (key := m.key()) and key.endswith(person.encode()) and (value := m.value())
        ]


@pytest.fixture
def profile(
    settings: CivsyncSettings, registry: SchemaRegistry, unique_name: str, tmp_path: Path
) -> Iterator[Profile]:
    databases = {store: f"{unique_name}_{store}"[:60] for store in ("civil", "population")}
    servers = settings.stores()
    stores = {name: recreate(servers[name], db, name) for name, db in databases.items()}
    prefix = unique_name.replace("_", "-")
    engine = EngineProcesses(
        engine_config(tmp_path / "civsync.toml", settings, databases, prefix),
        tmp_path / "logs",
        extra={f"capture-{name}": ["--slot", f"{unique_name}_{name}"[:60]] for name in stores},
    )
    stop = threading.Event()
    supervisor = threading.Thread(target=engine.supervise, args=(stop,), daemon=True)
    try:
        with (
            connect(stores["civil"], autocommit=True) as civil,
            connect(stores["population"], autocommit=True) as population,
        ):
            run = Profile(civil, population, prefix, settings, registry, engine)
            _seed(run)
            engine.start()
            wait_for(
                lambda: _applied(population) >= 5 or engine.exited(),
                "the initial sync",
                timeout_s=120,
            )
            assert not engine.exited(), f"engine exited: {engine.exited()}"
            supervisor.start()
            yield run
    finally:
        stop.set()
        if supervisor.is_alive():
            supervisor.join()
        engine.stop()
        if not os.environ.get("CIVSYNC_KEEP_TOPICS"):  # else kept, to look into
            for name, db in databases.items():
                drop(servers[name], db)
            topics = TopicAdmin(settings.kafka)
            topics.delete([t for t in topics.names() if t.startswith(prefix)])


def _applied(conn: Connection) -> int:
    """People the sink has applied to ``conn``'s store so far."""
    if conn.execute("SELECT to_regclass('_civsync.applied')").fetchone() == (None,):
        return 0  # the sink has not started
    row = conn.execute("SELECT count(*) FROM _civsync.applied").fetchone()
    return 0 if row is None else int(str(row[0]))


def _seed(run: Profile) -> None:
    people = [
        (ANH, "Nguyễn Văn Anh", "1990-01-02", "male"),
        (BINH, "Trần Văn Bình", "1990-03-04", "male"),
        (CHI, "Lê Thị Chi", "1992-05-06", "female"),
        (DUNG, "Phạm Văn Dũng", "1985", "male"),
        (EM, "Hoàng Thị Em", "1995-07-08", "female"),
    ]
    for pin, name, born, sex in people:
        place = SPLIT if pin == BINH else None
        shared = {"pin": pin, "full_name": name, "birth_date": born, "sex": sex}
        run.insert(run.population, "citizen", **shared)
        person = run.insert(run.civil, "person", **shared, place_of_birth=place)
        if pin == ANH:
            run.insert(
                run.civil,
                "birth_registration",
                **ACT,
                number="1",
                person_id=person,
                pin=pin,
                full_name=name,
                birth_date=born,
                sex=sex,
            )
