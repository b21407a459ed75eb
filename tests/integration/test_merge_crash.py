"""Crashes and scale-out of the merger on the real services: kill -9 in the middle of its
Kafka transactions, restart, converge with nothing lost; two members share the partitions,
and with source topics routed by person each merges what it reads: one hop, no re-keying."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import psycopg
from confluent_kafka.admin import AdminClient

from civsync.config import CivsyncSettings
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import Connection, connect
from tests.integration.capture_support import q
from tests.integration.merge_support import Pipeline, pipeline, wait_for


def _pin(n: int) -> str:
    return f"079195{n:06d}"


class CivilWriter(threading.Thread):
    """Inserts people, then renames them again and again, in transactions of 1 to 50 rows;
    remembers the last name each PIN was given."""

    def __init__(self, settings: CivsyncSettings, table: str, people: int) -> None:
        super().__init__(daemon=True)
        self.settings, self.table, self.people = settings, table, people
        self.stop = threading.Event()
        self.last: dict[str, str] = {}
        self.rng = random.Random(5)  # noqa: S311 - test data

    def run(self) -> None:
        with connect(self.settings.civil) as conn:
            for n in range(self.people):
                self.last[_pin(n)] = f"Võ Thị Em {n}"
                conn.execute(
                    q("INSERT INTO {t} (pin, full_name) VALUES (%s, %s)", self.table),
                    (_pin(n), self.last[_pin(n)]),
                )
            conn.commit()
            round_ = 0
            while not self.stop.is_set():
                round_ += 1
                names = {
                    _pin(n): f"Võ Thị Em {n}.{round_}"
                    for n in self.rng.sample(range(self.people), self.rng.randint(1, 50))
                }
                try:
                    for pin, name in names.items():
                        conn.execute(
                            q("UPDATE {t} SET full_name = %s WHERE pin = %s", self.table),
                            (name, pin),
                        )
                    conn.commit()
                except psycopg.errors.DeadlockDetected:
                    conn.rollback()  # the sink was writing the same rows: as a user would, move on
                    continue
                self.last.update(names)  # only what committed
                time.sleep(0.02)


def _nothing_lost(run: Pipeline, writer: CivilWriter) -> None:
    population = run.rows("population")
    missing = sorted(set(writer.last) - set(population))
    assert not missing, f"{len(missing)} people never reached the population store"
    stale = {p: (population[p]["full_name"], name) for p, name in writer.last.items()
             if population[p]["full_name"] != name}  # fmt: skip
    assert not stale, f"{len(stale)} people hold an older name, e.g. {next(iter(stale.items()))}"


def test_killing_the_merger_mid_transaction_loses_nothing(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    with pipeline(civil, population, tmp_path, unique_name) as run:
        writer = CivilWriter(settings, run.civil_table, people=400)
        writer.start()
        rng = random.Random(2026)  # noqa: S311 - kill timing
        for kill in range(8):
            time.sleep(rng.uniform(0.3, 2.0))
            run.kill("merger-0")
            if kill == 3:
                run.kill("sink-population")
                run.start("sink-population")
            run.start("merger-0")
        writer.stop.set()
        writer.join(timeout=30)
        run.settle(settings.kafka, timeout_s=180)
        _nothing_lost(run, writer)


def test_two_mergers_share_the_partitions_and_survive_losing_one(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    admin = AdminClient(settings.kafka.client_config())
    group = f"{unique_name}-merger"

    def members() -> int:
        described = admin.describe_consumer_groups([group])[group].result(timeout=10)
        return len(described.members)

    with pipeline(civil, population, tmp_path, unique_name, mergers=2) as run:
        wait_for(lambda: members() == 2, "both mergers joined the group")
        writer = CivilWriter(settings, run.civil_table, people=200)
        writer.start()
        wait_for(lambda: len(run.rows("population")) >= 100, "people reach the population store")
        # capture routes each table by its person column (route_people), so partition p of
        # every source topic belongs to the member that owns the people of p: nothing re-keyed
        assert TopicAdmin(settings.kafka).end_offsets(f"{run.topic_prefix}.merge.edits") == 0
        run.kill("merger-1")  # its partitions move to merger-0, once the group notices
        wait_for(lambda: members() == 1, "the killed member leaves the group", timeout_s=60)
        time.sleep(2)  # people of both members' partitions renamed after the hand-over
        writer.stop.set()
        writer.join(timeout=30)
        run.settle(settings.kafka, timeout_s=180)
        _nothing_lost(run, writer)
