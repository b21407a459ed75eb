"""The merger and sinks on the real services: convergence, conflicts, no echo, steward decisions."""

from __future__ import annotations

import random
from pathlib import Path

from civsync.config import CivsyncSettings
from connectors.merge.records import MergeTopics
from connectors.merge.steward import history
from connectors.postgres import Connection
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import q
from tests.integration.merge_support import pipeline


def _pin(n: int) -> str:
    return f"001090{n:06d}"


def test_concurrent_edits_on_both_stores_converge_by_policy(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    registry: SchemaRegistry,
) -> None:
    people = range(30)
    with pipeline(civil, population, tmp_path, unique_name) as run:
        person, citizen = run.civil_table, run.population_table
        for n in people[:20]:
            civil.execute(
                q(
                    "INSERT INTO {t} (pin, full_name, birth_date, sex) VALUES (%s, %s, %s, %s)",
                    person,
                ),
                (_pin(n), f"Nguyễn Văn An {n}", f"1990-01-{n % 28 + 1:02d}", "male"),
            )
        for n in people[10:]:
            population.execute(
                q(
                    "INSERT INTO {t} (pin, full_name, permanent_residence) VALUES (%s, %s, %s)",
                    citizen,
                ),
                (_pin(n), f"Nguyen Van An {n}", f"Số {n} Hàng Bạc, Hà Nội"),
            )
        rng = random.Random(7)
        for _ in range(60):  # interleaved edits on both sides
            n = rng.choice(people)
            if rng.random() < 0.5:
                civil.execute(
                    q("UPDATE {t} SET full_name = %s, sex = %s WHERE pin = %s", person),
                    (f"Trần Thị Bình {rng.randrange(100)}", "female", _pin(n)),
                )
            else:
                population.execute(
                    q("UPDATE {t} SET permanent_residence = %s WHERE pin = %s", citizen),
                    (f"Thôn {rng.randrange(100)}, Bắc Ninh", _pin(n)),
                )

        run.settle(settings.kafka)
        assert len(run.rows("civil")) == len(run.rows("population")) == 30
        civil_rows, population_rows = run.rows("civil"), run.rows("population")
        for n in people[10:20]:  # in both stores: civil owns the name, population the residence
            assert civil_rows[_pin(n)]["full_name"] != f"Nguyen Van An {n}"
            assert population_rows[_pin(n)]["permanent_residence"] is not None
        conflicts = history(settings.kafka, registry, MergeTopics(run.topic_prefix))
        named = {c.latest["person"] for c in conflicts.values() if c.latest["field"] == "full_name"}
        assert named >= {_pin(n) for n in people[10:20]}  # no disagreement went unrecorded
        for conflict in conflicts.values():
            first = conflict.records[0]
            assert first["decision"] in {"held", "kept"}
            assert first["standing"]["value"] != first["contested"]["value"]
