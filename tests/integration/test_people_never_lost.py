"""Issue 17, the two ways people were lost, on the real services: every person must end in
both stores with every field. These tests stay through the capture and merge redesigns.

1. Rows that exist before capture starts and are updated while their snapshot chunks are
   open (with kill -9s of capture and the merger): the snapshot rightly drops such a row,
   as the update's after-image is newer, and that update must teach the person in full.
2. The Kafka broker killed (-9) and started again under steady writes in both stores: no
   part may exit, nothing committed may be lost.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from civsync.config import CivsyncSettings
from civsync.services import LocalServices
from connectors.postgres import Connection, connect
from tests.integration.conftest import RUN_DIR
from tests.integration.merge_support import Pipeline, pipeline, wait_for

REQUIRED = ("full_name",)  # NOT NULL in both test tables, as in the profile's stores
PEOPLE = 600  # seeded in each store before capture starts


def _pin(store: str, n: int) -> str:
    return f"0{'79' if store == 'civil' else '01'}195{n:06d}"


def _person(store: str, n: int) -> dict[str, str]:
    return {
        "pin": _pin(store, n),
        "full_name": f"Phạm Thị Hạnh {store} {n}",
        "birth_date": f"1995-0{1 + n % 9}-1{n % 10}",  # as the PIN says: a woman born in 1995
        "sex": "female",
    }


def _insert(conn: Connection, table: str, row: dict[str, str]) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(map(sql.Identifier, row)),
            sql.SQL(", ").join(sql.Placeholder() * len(row)),
        ),
        list(row.values()),
    )


class Writers(threading.Thread):
    """Both stores at once: each updates the field it owns on random people in transactions
    of 20 (civil a hometown, population a residence) and, with ``newcomers``, registers new
    people too; remembers every person that committed."""

    def __init__(self, settings: CivsyncSettings, run: Pipeline, *, newcomers: bool) -> None:
        super().__init__(daemon=True)
        self.settings, self.run_, self.newcomers = settings, run, newcomers
        self.stop = threading.Event()
        self.people: dict[str, set[str]] = {"civil": set(), "population": set()}
        self.rounds = 0
        self.failure: BaseException | None = None
        self._rng = random.Random(17)  # noqa: S311 - test data

    def run(self) -> None:
        try:
            with (
                connect(self.settings.civil) as civil,
                connect(self.settings.population) as population,
            ):
                self._write(civil, population)
        except BaseException as exc:  # surfaced by the test
            self.failure = exc

    def _write(self, civil: Connection, population: Connection) -> None:
        stores = (
            ("civil", civil, self.run_.civil_table, "hometown"),
            ("population", population, self.run_.population_table, "permanent_residence"),
        )
        next_new = PEOPLE
        while not self.stop.is_set():
            self.rounds += 1
            for store, conn, table, column in stores:
                place = f'{{"text": "thôn {self.rounds}"}}'
                pins = [_pin(store, n) for n in self._rng.sample(range(PEOPLE), 20)]
                try:
                    statement = sql.SQL("UPDATE {} SET {} = %s WHERE pin = %s").format(
                        sql.Identifier(table), sql.Identifier(column)
                    )
                    for pin in pins:
                        conn.execute(statement, (place, pin))
                    if self.newcomers:
                        _insert(conn, table, _person(store, next_new))
                    conn.commit()
                except psycopg.errors.DeadlockDetected:
                    conn.rollback()  # a sink was writing the same rows: a user moves on
                    continue
                if self.newcomers:
                    self.people[store].add(_pin(store, next_new))
            next_new += 1
            time.sleep(0.005)


def _seed(
    writers: list[Writers], settings: CivsyncSettings, *, newcomers: bool
) -> Callable[[Pipeline], None]:
    """Seed ``PEOPLE`` people into each store, then start writing, before capture starts."""

    def seed(run: Pipeline) -> None:
        for conn, table, store in (
            (run.civil, run.civil_table, "civil"),
            (run.population, run.population_table, "population"),
        ):
            with conn.transaction():
                for n in range(PEOPLE):
                    _insert(conn, table, _person(store, n))
        writer = Writers(settings, run, newcomers=newcomers)
        writer.people = {s: {_pin(s, n) for n in range(PEOPLE)} for s in writer.people}
        writer.start()
        writers.append(writer)

    return seed


def _stop(writer: Writers) -> None:
    writer.stop.set()
    writer.join(timeout=60)
    assert writer.failure is None, f"the writers failed: {writer.failure!r}"
    assert writer.rounds > 10, "the writers must have been writing while capture ran"


def _everyone_everywhere_in_full(run: Pipeline, writer: Writers) -> None:
    """Every person either store committed is in both stores, with every field each store
    was given (the settle before this also found both stores in agreement)."""
    for store in ("civil", "population"):
        rows = run.rows(store)
        everyone = writer.people["civil"] | writer.people["population"]
        missing = sorted(everyone - set(rows))
        assert not missing, f"{len(missing)} people never reached {store}, e.g. {missing[:3]}"
        incomplete = [p for p in everyone if not all(rows[p][f] for f in _PERSON_FIELDS)]
        assert not incomplete, f"{len(incomplete)} people lack a field in {store}"


_PERSON_FIELDS = ("full_name", "birth_date", "sex")


def test_rows_updated_while_their_snapshot_chunks_are_open_reach_the_other_store_in_full(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    writers: list[Writers] = []
    with pipeline(
        civil,
        population,
        tmp_path,
        unique_name,
        not_null=REQUIRED,
        seed=_seed(writers, settings, newcomers=False),
        capture_args=("--snapshot-chunk", "40"),  # many chunks, each a window for an update
        wait=False,
    ) as run:
        rng = random.Random(2026)  # noqa: S311 - kill timing
        for role in ("capture-population", "capture-civil", "merger-0", "capture-population"):
            time.sleep(rng.uniform(0.5, 1.5))  # inside the initial snapshots
            run.kill(role)
            run.start(role)
        time.sleep(3)
        _stop(writers[0])
        run.settle(settings.kafka, timeout_s=240)
        _everyone_everywhere_in_full(run, writers[0])


class Broker:
    """Kill -9 and start again the Kafka broker the tests use (the local launcher's)."""

    def __init__(self, settings: CivsyncSettings, services_mode: str) -> None:
        if services_mode != "local":
            pytest.skip(f"restarting the broker needs the local launcher (mode {services_mode})")
        self._services = LocalServices(RUN_DIR, settings)

    def kill(self) -> None:
        process = self._services.kafka().process
        pid = process.pid()
        assert pid is not None, "the broker is running"
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: process.pid() is None, "the killed broker is gone", timeout_s=30)

    def start(self) -> None:
        self._services.up()  # starts what is not running, waits until healthy


def test_a_broker_killed_and_restarted_under_writes_in_both_stores_loses_nobody(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    services_mode: str,
) -> None:
    broker = Broker(settings, services_mode)
    writers: list[Writers] = []
    with pipeline(
        civil,
        population,
        tmp_path,
        unique_name,
        not_null=REQUIRED,
        seed=_seed(writers, settings, newcomers=True),
    ) as run:
        time.sleep(2)
        try:
            broker.kill()
            time.sleep(15)  # longer than the merger's session timeout: writes go on meanwhile
            run.check_alive()  # every part waits for the broker; none exits
        finally:
            broker.start()
        time.sleep(5)
        _stop(writers[0])
        run.settle(settings.kafka, timeout_s=300)
        _everyone_everywhere_in_full(run, writers[0])
