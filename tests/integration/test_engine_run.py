"""`civsync run`: the whole engine under one supervisor, on the real services. Each part
killed with -9 in turn is restarted and the stores keep converging; SIGTERM stops every part
and the supervisor; a supervisor killed with -9 takes its parts with it. `civsync status`
sees a part stopped and the lag it leaves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from civsync.config import CivsyncSettings
from civsync.runner import ROLES, engine_config
from connectors.kafka.admin import TopicAdmin
from connectors.migrations import drop, recreate
from connectors.postgres import Connection, connect
from tests.integration.merge_support import wait_for


@dataclass
class Engine:
    supervisor: subprocess.Popen[bytes]
    config: Path
    civil: Connection
    population: Connection
    log_dir: Path

    def parts(self) -> dict[str, int]:
        """The running parts: role -> pid (from the children's command lines)."""
        children = Path(f"/proc/{self.supervisor.pid}/task/{self.supervisor.pid}/children")
        found = {}
        for pid in children.read_text().split():
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except FileNotFoundError:
                continue  # exited meanwhile
            words = [a.decode() for a in argv]
            if len(words) < 6:
                continue  # a part killed, not yet reaped (no command line left)
            kind = {"capture": "capture", "merge": "merger", "sink": "sink"}.get(words[3], "?")
            found[kind if kind == "merger" else f"{kind}-{words[5]}"] = int(pid)
        return found

    def person_count(self) -> int:
        row = self.population.execute("SELECT count(*) FROM citizen").fetchone()
        return 0 if row is None else int(str(row[0]))

    def add_people(self, first: int, count: int) -> None:
        for n in range(first, first + count):
            self.civil.execute(
                "INSERT INTO person (pin, full_name, birth_date, sex) VALUES (%s, %s, %s, %s)",
                (f"001090{n:06d}", f"Huỳnh Văn {n}", "1990-01-02", "male"),
            )


@pytest.fixture
def engine(settings: CivsyncSettings, unique_name: str, tmp_path: Path) -> Iterator[Engine]:
    databases = {store: f"{unique_name}_{store}"[:60] for store in ("civil", "population")}
    servers = settings.stores()
    stores = {name: recreate(servers[name], db, name) for name, db in databases.items()}
    prefix = unique_name.replace("_", "-")
    config = engine_config(tmp_path / "civsync.toml", settings, databases, prefix)
    with config.open("a") as text:
        text.write(f'[capture]\nslot_prefix = "{unique_name[:40]}"\n')
    log_dir = tmp_path / "logs"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "civsync.cli",
            "run",
            "--config",
            str(config),
            "--log-dir",
            str(log_dir),
        ]
    )
    try:
        with (
            connect(stores["civil"], autocommit=True) as civil,
            connect(stores["population"], autocommit=True) as population,
        ):
            yield Engine(supervisor, config, civil, population, log_dir)
    finally:
        if supervisor.poll() is None:
            supervisor.terminate()
            supervisor.wait(timeout=60)
        for name, db in databases.items():
            drop(servers[name], db)
        topics = TopicAdmin(settings.kafka)
        topics.delete([t for t in topics.names() if t.startswith(prefix)])


def _restarted(engine: Engine, role: str, killed: int) -> bool:
    return engine.parts().get(role) not in (None, killed)


def _synced(engine: Engine, people: int) -> bool:
    return engine.person_count() == people


def _gone(pids: list[int]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() for pid in pids)


def test_civsync_run_restarts_each_part_killed_and_stops_them_all(engine: Engine) -> None:
    wait_for(lambda: len(engine.parts()) == len(ROLES), "every part running", timeout_s=60)
    engine.add_people(0, 20)
    wait_for(lambda: engine.person_count() == 20, "the first people synced", timeout_s=120)
    for n, role in enumerate(ROLES):
        killed = engine.parts()[role]
        os.kill(killed, signal.SIGKILL)
        wait_for(partial(_restarted, engine, role, killed), f"{role} restarted", timeout_s=60)
        engine.add_people(100 * (n + 1), 10)
        synced = partial(_synced, engine, 20 + 10 * (n + 1))
        wait_for(synced, f"people synced after {role} was killed", timeout_s=180)
    parts = list(engine.parts().values())
    engine.supervisor.send_signal(signal.SIGTERM)
    assert engine.supervisor.wait(timeout=60) == 0
    assert _gone(parts), "a part outlived the supervisor's stop"


def test_a_supervisor_killed_takes_its_parts_with_it(engine: Engine) -> None:
    wait_for(lambda: len(engine.parts()) == len(ROLES), "every part running", timeout_s=60)
    parts = list(engine.parts().values())
    engine.supervisor.send_signal(signal.SIGKILL)
    engine.supervisor.wait(timeout=10)
    wait_for(lambda: _gone(parts), "every part stopped with its supervisor", timeout_s=60)


def _status(engine: Engine) -> tuple[int, dict[str, Any]]:
    """`civsync status --json` of the engine: exit code and document."""
    done = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "status", "--json", "--config", str(engine.config)],
        capture_output=True,
        check=False,
        timeout=120,
    )
    return done.returncode, json.loads(done.stdout)


def _merger(document: dict[str, Any]) -> dict[str, Any]:
    return next(g for g in document["groups"] if g["part"] == "merger")


def _sees_merger_stopped(engine: Engine) -> bool:
    code, document = _status(engine)
    return code == 1 and not _merger(document)["running"] and _merger(document)["lag"] > 0


def test_status_reports_a_stopped_part_and_its_lag(engine: Engine) -> None:
    wait_for(lambda: len(engine.parts()) == len(ROLES), "every part running", timeout_s=60)
    engine.add_people(0, 10)
    wait_for(partial(_synced, engine, 10), "the first people synced", timeout_s=120)
    code, document = _status(engine)
    assert (code, document["healthy"], document["problems"]) == (0, True, [])
    assert [c["running"] for c in document["captures"]] == [True, True]
    assert all(g["running"] for g in document["groups"])
    assert document["waiting_people"] == {"civil": 0, "population": 0}

    merger = engine.parts()["merger"]
    os.kill(merger, signal.SIGSTOP)  # alive to its supervisor, gone to its group
    try:
        engine.add_people(100, 10)
        wait_for(partial(_sees_merger_stopped, engine), "status sees it", timeout_s=90)
        code, document = _status(engine)
        assert code == 1
        assert not _merger(document)["running"]
        assert _merger(document)["lag"] > 0
        assert any("merger: not running" in p for p in document["problems"])
        assert sum(document["written_last_minute"].values()) > 0
    finally:
        os.kill(merger, signal.SIGCONT)
    wait_for(partial(_synced, engine, 20), "the merger back at work", timeout_s=120)
    wait_for(lambda: _status(engine)[0] == 0, "healthy again", timeout_s=60)
