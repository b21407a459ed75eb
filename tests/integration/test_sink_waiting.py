"""A person missing a column its table requires waits, counted and visible, and is inserted by
the version that completes it: never inserted half, never quarantined as rejected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from civsync.config import CivsyncSettings
from connectors.merge.target import Waiting, missing_required, waiting_people
from connectors.postgres import Connection
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from tests.http_probe import free_port
from tests.integration.capture_support import civsync_output, q, read_topic, wait_caught_up
from tests.integration.merge_support import Pipeline, pipeline, wait_for


def test_missing_required_names_the_required_columns_without_a_value() -> None:
    """No services: the columns a person lacks, by column name, in mapping order."""
    columns = {"full_name": "ho_ten", "birth_date": "ngay_sinh", "sex": "gioi_tinh", "note": "n"}
    required = {"ho_ten", "ngay_sinh", "gioi_tinh"}
    values = {"birth_date": None, "sex": "male", "note": None}
    # full_name absent, birth_date null: both missing; sex set; note is not required
    assert missing_required(required, columns, values) == ["ho_ten", "ngay_sinh"]
    complete = {**values, "full_name": "Nguyễn Văn An", "birth_date": "1990"}
    assert missing_required(required, columns, complete) == []
    assert missing_required(set(), columns, {}) == []


def _sample(port: int, sample: str) -> float | None:
    """The value of ``sample`` (its name and labels, as exposed) on the part's /metrics."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(f"{sample} "):
            return float(line.rsplit(" ", 1)[1])
    return None


def _gauge(port: int) -> float | None:
    return _sample(port, 'civsync_sink_waiting_people{store="civil"}')


def _civil_sink_logging_at_info(run: Pipeline, port: int, log: Path) -> None:
    """Replace the pipeline's civil sink by one that logs at INFO to ``log`` and serves
    metrics on ``port`` (the pipeline still stops it)."""
    old = run.processes.pop("sink-civil")
    old.terminate()
    old.wait(timeout=30)
    args = ("sink", "run", "civil", "--config", str(run.config), "--metrics-port", str(port))
    with log.open("wb") as out:
        run.processes["sink-civil"] = subprocess.Popen(
            [sys.executable, "-m", "civsync.cli", *args],
            env={**os.environ, **run.login("sink-civil"), "CIVSYNC_LOG_LEVEL": "INFO"},
            stderr=out,
        )


def test_a_person_missing_a_required_column_waits_until_complete(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    registry: SchemaRegistry,
) -> None:
    # this run's own PINs (the quarantine topic is shared), born in 1991 as their digits say
    pin = f"079091{uuid.uuid4().int % 999_999:06d}"
    other = f"{int(pin) + 1:012d}"
    name = "Vũ Thị Lan"
    port, log = free_port(), tmp_path / "sink-civil.log"
    with pipeline(
        civil,
        population,
        tmp_path,
        unique_name,
        not_null=("full_name",),
        not_null_in=("civil",),  # the population store knows people before their name
    ) as run:
        _civil_sink_logging_at_info(run, port, log)
        target = f"public.{run.civil_table}"
        insert = q(
            "INSERT INTO {t} (pin, full_name, birth_date, permanent_residence)"
            " VALUES (%s, %s, %s, %s)",
            run.population_table,
        )
        population.execute(insert, (pin, None, "1991-04-30", "Số 5 Lê Lợi, Huế"))
        population.execute(insert, (other, "Hồ Văn Minh", "1991-02-01", "Số 7 Lê Lợi, Huế"))
        wait_caught_up(population, run.population_table)

        # the civil sink waits with the nameless person, and goes on with the other one
        waiting: list[Waiting] = wait_for(
            lambda: waiting_people(civil, [target]), "the nameless person waits in civil"
        )
        assert [(w.table, w.person, w.missing) for w in waiting] == [(target, pin, ["full_name"])]
        wait_for(lambda: other in run.rows("civil"), "the complete person reaches civil")
        assert pin not in run.rows("civil")
        wait_for(lambda: _gauge(port) == 1, "the waiting gauge counts the person")
        run.check_alive()
        listed = civsync_output("sink", "waiting", "civil", "--config", str(run.config))
        assert pin in listed
        assert "full_name" in listed
        assert "1 waiting person(s)" in listed

        # the population store learns the name: the person is inserted, whole, and stops waiting
        population.execute(
            q("UPDATE {t} SET full_name = %s WHERE pin = %s", run.population_table), (name, pin)
        )
        run.settle(settings.kafka)
        assert run.rows("civil")[pin] == run.rows("population")[pin]
        assert run.rows("civil")[pin]["full_name"] == name
        assert run.rows("civil")[pin]["permanent_residence"] == "Số 5 Lê Lợi, Huế"
        assert waiting_people(civil, [target]) == []
        wait_for(lambda: _gauge(port) == 0, "the waiting gauge drops to zero")
        assert (_sample(port, 'civsync_sink_rows_total{store="civil"}') or 0) >= 2
        assert (_sample(port, 'civsync_sink_batch_seconds_count{store="civil"}') or 0) >= 1
        health = f"http://127.0.0.1:{port}/healthz"
        with urllib.request.urlopen(health, timeout=5) as response:
            assert json.loads(response.read())["part"] == "sink-civil"
        assert "0 waiting person(s)" in civsync_output(
            "sink", "waiting", "civil", "--config", str(run.config)
        )
        run.check_alive()

    rejected = [
        r
        for r in read_topic(settings, registry, QUARANTINE_TOPIC)
        if r["stage"] == "apply" and pin in r["payload"]
    ]
    assert rejected == [], "a wait is not a rejection"
    logged = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    waits = [e for e in logged if e.get("event") == "person waits for required columns"]
    assert [(e["store"], e["table"], e["missing"]) for e in waits] == [
        ("civil", target, ["full_name"])
    ]
    text = log.read_text()
    assert pin not in text
    assert name not in text
