"""Auditors' tools on the real services: `civsync history` rebuilds a person's state as of
any time from the topics alone, across a held conflict a steward resolves, a merger killed
and restarted, and a re-issued PIN; `civsync audit verify` holds on the real topics and
names exactly the step a forger produced."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import fastavro
from confluent_kafka import Producer

from connectors.kafka.admin import TopicAdmin
from connectors.kafka.reader import read_to_end
from connectors.merge.records import MergeTopics
from connectors.merge.steward import history as conflict_history
from schemas import load
from tests.integration.capture_support import civsync_output
from tests.integration.merge_support import wait_for
from tests.integration.profile_support import EM, EM_REISSUED, Profile


def _civsync(run: Profile, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civsync.cli", *args, "--config", str(run.config)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "250"},
    )


def _observe(run: Profile, key: str) -> tuple[int, dict[str, Any]]:
    """Once civsync.person has been quiet for two seconds: the time, and ``key``'s record as
    a subscriber sees it then."""
    topic, admin = MergeTopics(run.prefix).person.name, TopicAdmin(run.settings.kafka)

    def quiet() -> bool:
        before = admin.end_offsets(topic)
        time.sleep(2.0)
        return admin.end_offsets(topic) == before

    wait_for(quiet, "civsync.person quiet")
    now = time.time_ns() // 1_000_000
    record = run.person_records(key)[-1]
    return now, {name: record[name] for name in ("person", "version", "values", "former_keys")}


def _held(run: Profile) -> list[Any]:
    found = conflict_history(run.settings.kafka, run.registry, MergeTopics(run.prefix))
    return [c for c in found.values() if c.latest["person"] == EM and c.pending]


def _history(run: Profile, key: str, *args: str) -> dict[str, Any]:
    done = _civsync(run, "history", key, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    document: dict[str, Any] = json.loads(done.stdout)
    return document


def test_history_as_of_three_times_and_tamper_evidence(profile: Profile) -> None:
    run, civil, population = profile, profile.civil, profile.population
    wait_for(lambda: run.person_records(EM), "Em's merged record")
    observed = [_observe(run, EM)]

    # The population store edits Em: her name (civil-status's authority: held for a
    # steward) and her religion (the population store's).
    population.execute(
        "UPDATE citizen SET full_name = 'Hoang Thi Em', religion = 'Phật giáo' WHERE pin = %s",
        (EM,),
    )
    wait_for(lambda: run.person_records(EM)[-1]["values"].get("religion"), "the religion")
    held = wait_for(lambda: _held(run), "the held conflict on Em's name")
    observed.append(_observe(run, EM))

    # The merger is killed and restarted by the supervisor; then a steward decides.
    merger = run.engine.pids()["merger"]
    os.kill(merger, signal.SIGKILL)
    wait_for(lambda: run.engine.pids().get("merger") not in (None, merger), "a new merger")
    civsync_output(
        "conflicts", "resolve", held[0].latest["conflict_id"], "--by", "steward-hanoi",
        "--take", "contested", "--config", str(run.config),
    )  # fmt: skip
    wait_for(
        lambda: run.person_records(EM)[-1]["values"]["full_name"] == "Hoang Thi Em",
        "the steward's decision on civsync.person",
    )

    # The population store re-issues her PIN.
    with population.transaction():
        population.execute("UPDATE citizen SET pin = %s WHERE pin = %s", (EM_REISSUED, EM))
        run.insert(
            population, "pin_history", old_pin=EM, new_pin=EM_REISSUED,
            changed_on="2025-09-01", reason="sex_redetermination",
        )  # fmt: skip
    wait_for(
        lambda: EM in (run.person_records(EM_REISSUED) or [{"former_keys": []}])[-1]["former_keys"],
        "Em under her re-issued PIN",
    )
    wait_for(
        lambda: run.one(civil, "SELECT count(*) FROM person WHERE pin = %s", EM_REISSUED) == 1,
        "civil-status's row renamed",
    )
    observed.append(_observe(run, EM_REISSUED))

    # As of each time, the history gives the state a subscriber saw then, whichever key
    # is asked for; and the same answer when read again.
    for at, state in observed:
        for key in (EM_REISSUED, EM):
            assert _history(run, key, "--as-of", str(at))["state"] == state, (at, key)
    now = _history(run, EM_REISSUED)
    assert now == _history(run, EM_REISSUED)
    assert now["keys"][0] == EM_REISSUED
    assert EM in now["keys"]

    # The timeline tells the story: both stores' changes, the conflict held and resolved
    # by the steward, the steward's decision, the link and the move.
    steps = now["timeline"]
    origins = {e["origin"] for s in steps for e in s["events"]}
    assert {"civil", "population", "steward"} <= origins
    decisions = [(c["field"], c["decision"], c["actor"]) for s in steps for c in s["conflicts"]]
    assert ("full_name", "held", None) in decisions
    assert ("full_name", "resolved", "steward-hanoi") in decisions
    moves = [(s["person"], s["moved_to"]) for s in steps if s["moved_to"]]
    assert (EM, EM_REISSUED) in moves
    assert any(e["link_to"] == EM_REISSUED for s in steps for e in s["events"])
    table = civsync_output("history", EM_REISSUED, "--config", str(run.config))
    assert "steward steward-hanoi" in table
    assert f"moved to {EM_REISSUED}" in table

    # Every chain holds on the real topics, before any forgery.
    verified = _civsync(run, "audit", "verify", "--all")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "every chain holds" in verified.stdout

    # A forger produces an altered copy of Em's second step: verify names exactly it.
    offset, partition = _forge(run, EM, version=observed[1][1]["version"])
    for scope in (["--all"], ["--person", EM]):
        broken = _civsync(run, "audit", "verify", *scope)
        assert broken.returncode == 1, broken.stdout + broken.stderr
        assert f"broken: {EM} version" in broken.stdout
        assert f"partition {partition} offset {offset}:" in broken.stdout


def _forge(run: Profile, key: str, *, version: int) -> tuple[int, int]:
    """Produce an altered copy of ``key``'s history step at ``version`` (hashes kept) to
    its partition; where it landed (offset, partition)."""
    topic = MergeTopics(run.prefix).history.name
    schema = fastavro.parse_schema(json.loads(load("person_version")))
    landed: list[tuple[int | None, int | None]] = []
    for message in read_to_end(run.settings.kafka, topic):
        payload = message.value() or b""
        if message.key() != key.encode():
            continue
        record = fastavro.schemaless_reader(io.BytesIO(payload[5:]), schema, None)
        assert isinstance(record, dict)
        if record["version"] == version:
            record["values"]["religion"] = "Công giáo"
            forged = io.BytesIO()
            forged.write(payload[:5])  # the same registry framing
            fastavro.schemaless_writer(forged, schema, record)
            producer = Producer(run.settings.kafka.client_config())
            producer.produce(
                topic,
                forged.getvalue(),
                key.encode(),
                partition=message.partition() or 0,
                on_delivery=lambda _, m: landed.append((m.offset(), m.partition())),
            )
            producer.flush(30)
            offset, partition = landed[0]
            assert offset is not None and partition is not None  # noqa: PT018 - delivered
            return offset, partition
    raise AssertionError(f"no step of version {version} for {key}")
