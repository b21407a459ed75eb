"""The merger and sinks on the real services: convergence, conflicts, no echo, steward decisions."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

from civsync.config import CivsyncSettings
from connectors.merge.records import MergeTopics
from connectors.merge.steward import history
from connectors.postgres import Connection
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import civsync_output, q, read_topic, wait_caught_up
from tests.integration.merge_support import pipeline, wait_for


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
        rng = random.Random(7)  # noqa: S311 - test data
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
        for conn, role in ((civil, "civsync_sink_civil"), (population, "civsync_sink_population")):
            sessions = conn.execute(  # each sink applied as its own role, over TLS
                "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
                " WHERE a.usename = %s AND a.datname = current_database()",
                (role,),
            ).fetchall()
            assert sessions, f"no session of {role}"
            assert all(ssl for (ssl,) in sessions), f"{role} without TLS"
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


def test_a_user_change_costs_one_store_write_and_no_echo(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    changes = 25
    with pipeline(civil, population, tmp_path, unique_name) as run:
        for n in range(changes):
            civil.execute(
                q("INSERT INTO {t} (pin, full_name, sex) VALUES (%s, %s, %s)", run.civil_table),
                (_pin(n), f"Lê Văn Cường {n}", "male"),
            )
        for n in range(changes):
            civil.execute(
                q("UPDATE {t} SET full_name = %s WHERE pin = %s", run.civil_table),
                (f"Lê Văn Cường {n} (sửa)", _pin(n)),
            )
        run.settle(settings.kafka)
        time.sleep(3)  # any ping-pong would show up as further writes now
        civil_writes, population_writes = run.writes("civil"), run.writes("population")
    assert [w for w in civil_writes if w[1]] == []  # civsync never rewrote the origin store
    assert len(civil_writes) == 2 * changes  # the users' inserts and updates, nothing else
    # The other store: at most one civsync write per user change, none by anyone else.
    assert all(by_civsync for _, by_civsync in population_writes)
    assert changes <= len(population_writes) <= 2 * changes
    assert run.rows("population")[_pin(3)]["full_name"] == "Lê Văn Cường 3 (sửa)"


def test_a_held_conflict_waits_for_a_steward_without_delaying_anyone_else(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    registry: SchemaRegistry,
) -> None:
    topics_prefix = f"{unique_name}.civsync"
    with pipeline(civil, population, tmp_path, unique_name) as run:
        for n in (1, 2):
            civil.execute(
                q("INSERT INTO {t} (pin, full_name) VALUES (%s, %s)", run.civil_table),
                (_pin(n), f"Phạm Thị Dung {n}"),
            )
        run.settle(settings.kafka)
        population.execute(  # population edits a name, which civil-status owns: held
            q("UPDATE {t} SET full_name = %s WHERE pin = %s", run.population_table),
            ("Pham Thi Dung", _pin(1)),
        )
        civil.execute(  # meanwhile another person changes: must flow regardless
            q("UPDATE {t} SET full_name = %s WHERE pin = %s", run.civil_table),
            ("Phạm Thị Dung (đã sửa)", _pin(2)),
        )
        run.settle(settings.kafka)
        assert run.rows("population")[_pin(2)]["full_name"] == "Phạm Thị Dung (đã sửa)"
        assert run.rows("population")[_pin(1)]["full_name"] == "Phạm Thị Dung 1"  # authority

        conflicts = history(settings.kafka, registry, MergeTopics(topics_prefix))
        pending = [c for c in conflicts.values() if c.pending]
        assert [(c.latest["person"], c.latest["field"]) for c in pending] == [
            (_pin(1), "full_name")
        ]
        held = pending[0].latest
        assert held["contested"] == {**held["contested"], "value": "Pham Thi Dung"}
        assert held["contested"]["origin"] == "population"
        assert held["standing"]["origin"] == "civil"

        listed = civsync_output("conflicts", "list", "--config", str(run.config))
        assert held["conflict_id"] in listed
        assert "1 conflict(s)" in listed
        civsync_output(
            "conflicts", "resolve", held["conflict_id"], "--by", "steward-hanoi",
            "--value", "Phạm Thị Dung Anh", "--config", str(run.config),
        )  # fmt: skip
        run.settle(settings.kafka)
        for store in ("civil", "population"):
            assert run.rows(store)[_pin(1)]["full_name"] == "Phạm Thị Dung Anh"
        closed = history(settings.kafka, registry, MergeTopics(topics_prefix))[held["conflict_id"]]
        assert [r["decision"] for r in closed.records] == ["held", "resolved"]
        assert closed.latest["actor"] == "steward-hanoi"
        assert closed.latest["outcome"]["value"] == "Phạm Thị Dung Anh"


def test_unusable_input_is_quarantined_with_its_reason_the_stream_goes_on_and_retry_works(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    registry: SchemaRegistry,
) -> None:
    with pipeline(civil, population, tmp_path, unique_name) as run:
        # the population store only takes these two values; civil-status sends a third
        population.execute(
            q(
                "ALTER TABLE {t} ADD CONSTRAINT sex_values CHECK (sex IN ('male', 'female'))",
                run.population_table,
            )
        )
        insert = q("INSERT INTO {t} (pin, full_name, sex) VALUES (%s, %s, %s)", run.civil_table)
        civil.execute(insert, ("", "Không Có Số", "male"))  # no PIN: no person to merge into
        civil.execute(insert, ("12345", "Số Sai", "male"))  # not a PIN: quarantined, named
        civil.execute(insert, (_pin(1), "Đỗ Văn Giang", "unknown"))  # refused by population
        civil.execute(insert, (_pin(2), "Đỗ Thị Hoa", "female"))  # fine
        wait_caught_up(civil, run.civil_table)
        wait_for(
            lambda: set(run.rows("population")) == {_pin(2)},
            "the good person reaches the population store",
        )
        quarantined = wait_for(
            lambda: [
                r
                for r in read_topic(settings, registry, QUARANTINE_TOPIC)
                if unique_name in (r["table"] or "") or unique_name in (r.get("source_topic") or "")
            ],
            "quarantine records",
        )
        reasons = {(r["stage"], r["reason"]) for r in quarantined}
        assert ("merge", "merge.no_person_key") in reasons
        assert ("merge", "pin.malformed") in reasons
        assert ("apply", "apply.rejected") in reasons
        rejected = next(r for r in quarantined if r["reason"] == "apply.rejected")
        assert "check constraint" in rejected["detail"]
        assert rejected["store"] == "population"

        # the store is fixed: the rejected person is sent again, through the sink, and lands
        population.execute(q("ALTER TABLE {t} DROP CONSTRAINT sex_values", run.population_table))
        source = (rejected[f"source_{part}"] for part in ("topic", "partition", "offset"))
        rejected_id = "{}[{}]@{}".format(*source)
        config = ("--config", str(run.config))
        assert rejected_id in civsync_output(
            "quarantine", "list", "--reason", "apply.rejected", *config
        )
        assert "sent to" in civsync_output("quarantine", "retry", rejected_id, *config)
        wait_for(
            lambda: set(run.rows("population")) == {_pin(1), _pin(2)},
            "the retried person reaches the population store",
        )
        civsync_output("quarantine", "retry", rejected_id, *config)  # again: changes nothing
        # a malformed PIN is still malformed: its retry is quarantined anew, naming the first
        malformed = next(r for r in quarantined if r["reason"] == "pin.malformed")
        civsync_output("quarantine", "retry", malformed["event_id"], *config)
        again = wait_for(
            lambda: [
                r
                for r in read_topic(settings, registry, QUARANTINE_TOPIC)
                if r.get("retry_of") == malformed["event_id"]
                and unique_name in (r.get("source_topic") or "")
            ],
            "the failed retry's own record",
        )
        assert [r["reason"] for r in again] == ["pin.malformed"]
        time.sleep(2)  # the second retry of the rejected person had its chance to fail
        assert run.rows("population")[_pin(1)]["full_name"] == "Đỗ Văn Giang"
        retried = [
            r
            for r in read_topic(settings, registry, QUARANTINE_TOPIC)
            if r.get("retry_of") and unique_name in (r.get("source_topic") or "")
        ]
        assert {r["retry_of"] for r in retried} == {malformed["event_id"]}


def test_reconcile_finds_drift_and_repair_brings_the_stores_back_by_policy(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
) -> None:
    with pipeline(civil, population, tmp_path, unique_name) as run:
        for n in range(5):
            civil.execute(
                q(
                    "INSERT INTO {t} (pin, full_name, sex) VALUES (%s, %s, 'female')",
                    run.civil_table,
                ),
                (_pin(n), f"Hoàng Thị Lan {n}"),
            )
        run.settle(settings.kafka)
        # drift: a write the stream never saw (made under an origin capture filters out)
        population.execute("SELECT pg_replication_origin_session_setup('civsync_apply_7')")
        population.execute(
            q("UPDATE {t} SET full_name = 'Hoang Thi Lan' WHERE pin = %s", run.population_table),
            (_pin(2),),
        )
        population.execute("SELECT pg_replication_origin_session_reset()")
        out = tmp_path / "reconcile"
        found = civsync_output("reconcile", "--out", str(out), "--config", str(run.config))
        assert "full_name" in found
        rows = (out / "mismatches.csv").read_text(encoding="utf-8").splitlines()
        assert rows[1:] == [f"{_pin(2)},full_name,Hoàng Thị Lan 2,Hoang Thi Lan"]
        assert json.loads((out / "mismatches.jsonl").read_text(encoding="utf-8")) == {
            "pin": _pin(2),
            "field": "full_name",
            "civil": "Hoàng Thị Lan 2",
            "population": "Hoang Thi Lan",
        }
        civsync_output("reconcile", "--repair", "--out", str(out), "--config", str(run.config))
        run.settle(settings.kafka)  # civil-status owns the name: its value is applied back
        assert run.rows("population")[_pin(2)]["full_name"] == "Hoàng Thị Lan 2"
        civsync_output("reconcile", "--out", str(out), "--config", str(run.config))
        assert (out / "mismatches.csv").read_text(encoding="utf-8").splitlines()[1:] == []
