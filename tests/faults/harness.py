"""Fault injection on real services: a steady load through the whole pipeline while one
service is killed, stopped or paused, then the evidence that nothing was lost or doubled.

The services are a set of their own (``fault_services``: Kafka, the registry and both
PostgreSQL stores on other loopback ports, under ``.run/faults``), so a broker killed here
never disturbs anything else using the development services; the broker's and the
population store's data directories are small disks of their own (``tests.faults.disk``),
which the disk faults fill. The pipeline is the tests'
(``tests.integration.merge_support``): both captures, a merger and both sinks as real
``civsync`` processes, which must ride the fault out without exiting.

A scenario (``run_scenario``): every person is created in both stores and synced; then both
stores change people at a steady rate (civil-status renames them, the population store
moves them, each person once in each store, to a value never written before), and a third
of the way in the fault strikes; the service comes back after ``outage_s``. When the writes
stop, every change committed must reach the other store (no loss), civsync must never write
the same row image twice in a row (no duplicate applied) and the stores must agree
(converged). The report gives the changes committed and delivered, the writes the stores
refused while away, how long the service was away (outage and restart), and the time from
its return until the last change arrived in the other store (the backlog delivered).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.e2e import _TICK_S, _directions, _load, _pins, _sql, _writes
from civsync.config import load_settings
from civsync.services import LocalServices
from civsync.services.postgres import OWNER, PostgresService
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import connect
from connectors.settings import StoreSettings
from engine.errors import CivsyncError
from tests.faults.disk import NoDiskToFillError, SmallDisks
from tests.integration.merge_support import Pipeline, pipeline

ROOT = Path(__file__).resolve().parents[2]
# The fault services' endpoints: the development ones' ports plus 10,000.
ENDPOINTS = {
    "CIVSYNC_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:19094",  # SASL_SSL, as admin
    "CIVSYNC_KAFKA__SSL_CA_LOCATION": str(ROOT / ".run" / "faults" / "kafka" / "ca.crt"),
    "CIVSYNC_REGISTRY__URL": "https://127.0.0.1:18081/apis/ccompat/v7",
    "CIVSYNC_REGISTRY__SSL_CA_LOCATION": str(ROOT / ".run" / "faults" / "registry" / "ca.crt"),
    "CIVSYNC_CIVIL__PORT": "15433",
    "CIVSYNC_POPULATION__PORT": "15434",
}


@contextmanager
def fault_services(run_dir: Path = ROOT / ".run" / "faults") -> Iterator[LocalServices]:
    """Services of the fault suite's own, up; this process's environment points civsync
    (and every process it starts) at them until the block ends, then they stop. Kafka is
    reached over its SASL_SSL listener, as ``admin`` (the pipeline's parts as themselves:
    ``merge_support.pipeline``)."""
    with pytest.MonkeyPatch.context() as env:
        for name in [n for n in os.environ if n.startswith(("CIVSYNC_KAFKA__", "CIVSYNC_REG"))]:
            env.delenv(name)  # other services', from the shell (`civsync services env`)
        for name, value in ENDPOINTS.items():
            env.setenv(name, value)
        services = LocalServices(run_dir, load_settings())
        for name in FILLABLE:
            DISKS.mount(_data_dir(services, name), owner=None if name == "kafka" else OWNER)
        try:
            services.up()
            yield services
        finally:
            services.down()
            DISKS.unmount()


def _store(services: LocalServices, name: str) -> PostgresService:
    return next(s for s in services.stores() if s.name == name)


# The services whose disks the suite can fill, each on a small filesystem of its own.
FILLABLE = ("kafka", "population")
DISKS = SmallDisks()


def _data_dir(services: LocalServices, name: str) -> Path:
    return services.kafka().data_dir if name == "kafka" else _store(services, name).data_dir


def _cluster_pids(store: PostgresService) -> list[int]:
    """The postmaster of ``store`` and every process it started."""
    postmaster = int((store.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == postmaster:  # the parent pid
            children.append(int(stat.parent.name))
    return [postmaster, *children]


def _signal_jvm(services: LocalServices, name: str, signum: int) -> None:
    service = services.kafka() if name == "kafka" else services.registry()
    pid = service.process.pid()
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signum)


Act = Callable[[LocalServices], object]  # done to the services


@dataclass(frozen=True)
class Fault:
    """What strikes a service (``strike``), and how it comes back (``restore``)."""

    name: str
    what: str
    strike: Act
    restore: Act
    fills_disk: bool = False  # needs the small disks (``tests.faults.disk``)


def _up(services: LocalServices) -> None:
    services.up()


def _pause(name: str) -> tuple[Act, Act]:
    if name in ("kafka", "registry"):
        return (
            lambda s: _signal_jvm(s, name, signal.SIGSTOP),
            lambda s: _signal_jvm(s, name, signal.SIGCONT),
        )
    paused: list[int] = []

    def strike(services: LocalServices) -> None:
        paused[:] = _cluster_pids(_store(services, name))
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)

    def restore(_: LocalServices) -> None:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)

    return strike, restore


def _fill(name: str) -> tuple[Act, Act]:
    def restore(services: LocalServices) -> None:
        DISKS.free(_data_dir(services, name))
        services.up()  # a service that stopped for its disk starts again

    return lambda s: DISKS.fill(_data_dir(s, name)), restore


FAULTS = [
    Fault(
        "kafka-kill",
        "the broker killed (-9), started again",
        lambda s: _signal_jvm(s, "kafka", signal.SIGKILL),
        _up,
    ),
    Fault(
        "kafka-stop",
        "the broker stopped cleanly, started again",
        lambda s: s.kafka().process.stop(),
        _up,
    ),
    Fault(
        "kafka-pause", "the broker paused (SIGSTOP) beyond the session timeouts", *_pause("kafka")
    ),
    Fault(
        "registry-kill",
        "the schema registry killed (-9), started again",
        lambda s: _signal_jvm(s, "registry", signal.SIGKILL),
        _up,
    ),
    Fault("registry-pause", "the schema registry paused (SIGSTOP)", *_pause("registry")),
    Fault(
        "civil-crash",
        "civil-status's PostgreSQL crashed (immediate stop), started again",
        lambda s: _store(s, "civil").stop(mode="immediate"),
        _up,
    ),
    Fault(
        "population-stop",
        "the population PostgreSQL stopped cleanly, started again",
        lambda s: _store(s, "population").stop(),
        _up,
    ),
    Fault(
        "population-pause",
        "the population PostgreSQL paused (SIGSTOP, every process)",
        *_pause("population"),
    ),
    Fault(
        "kafka-disk-full",
        "the broker's disk filled (no space left), then freed",
        *_fill("kafka"),
        fills_disk=True,
    ),
    Fault(
        "population-disk-full",
        "the population PostgreSQL's disk filled (no space left), then freed",
        *_fill("population"),
        fills_disk=True,
    ),
]


@dataclass(frozen=True)
class Size:
    rate: float = 100.0  # changes/s, both stores together
    seconds: float = 24.0  # of load
    outage_s: float = 15.0  # the service is away this long (beyond the 10 s session timeout)

    @property
    def people(self) -> int:
        """People per store: each is changed once in each store, so every change must
        reach the other store (two changes of one person could rightly merge into one)."""
        return int(self.rate / 2 * self.seconds) + 1


def run_scenario(services: LocalServices, fault: Fault, size: Size) -> dict[str, Any]:
    """One scenario's figures (see the module docstring); raises if the pipeline failed,
    and ``NoDiskToFillError`` if the fault fills a disk and this machine has none to fill."""
    if fault.fills_disk and DISKS.refused is not None:
        raise NoDiskToFillError(DISKS.refused)
    services.up()  # a scenario that failed may have left a service down
    settings = load_settings()
    name = f"fault_{fault.name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        civil = stack.enter_context(connect(settings.civil, autocommit=True))
        population = stack.enter_context(connect(settings.population, autocommit=True))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        later = stack.enter_context(contextlib.ExitStack())  # closed after the pipeline
        run = stack.enter_context(pipeline(civil, population, tmp, name))
        _load(run, size.people)
        _delivered(run, "load", timeout_s=300)
        stores = {run.civil_table: settings.civil, run.population_table: settings.population}
        writers = [
            SteadyWriter(stores[table], table, column, size)
            for _, table, _, _, column in _directions(run)
        ]
        for writer in writers:
            writer.start()
        time.sleep(size.seconds / 3)
        struck = datetime.now(UTC)
        fault.strike(services)
        try:
            time.sleep(size.outage_s)
        finally:
            fault.restore(services)  # returns once the service answers again
        back = datetime.now(UTC)
        for writer in writers:
            writer.join()
        # the pipeline's connections may have lost their server: new ones, closed last
        run.civil = later.enter_context(connect(settings.civil, autocommit=True))
        run.population = later.enter_context(connect(settings.population, autocommit=True))
        offered, delivered = _delivered(run, "fault", timeout_s=300)
        report = {
            "fault": fault.name,
            "what": fault.what,
            "changes_offered": offered,
            "changes_delivered": delivered,
            "writes_refused": sum(w.refused for w in writers),
            "duplicates_applied": _duplicates(run),
            "disagreeing_people": len(run.disagreements()),
            "away_s": round((back - struck).total_seconds(), 1),
            "caught_up_s": _caught_up_s(run, back),
        }
    admin = TopicAdmin(settings.kafka)
    admin.delete([topic for topic in admin.names() if topic.startswith(f"{name}.")])
    return report


class SteadyWriter(threading.Thread):
    """Changes ``size.rate / 2`` people per second in one store for ``size.seconds`` (one
    statement per 20 ms tick), each to a value never written before (tagged ``fault``). A
    store that is away refuses the statement, as it would refuse a user: counted, and the
    writer goes on, reconnecting."""

    def __init__(self, store: StoreSettings, table: str, column: str, size: Size) -> None:
        super().__init__(daemon=True)
        self._store, self._table, self._column, self._size = store, table, column, size
        self.refused = 0

    def run(self) -> None:
        per_tick = max(1, round(self._size.rate / 2 * _TICK_S))
        start, cursor, conn = time.monotonic(), 0, None
        statement = _sql(
            "UPDATE {t} AS p SET {c} = u.v FROM"
            " unnest(%s::text[], %s::text[]) AS u(pin, v) WHERE p.pin = u.pin",
            self._table,
            self._column,
        )
        for tick in range(int(self._size.seconds / _TICK_S)):
            people = self._size.people
            pins = _pins(cursor % people, min(per_tick, people - cursor % people))
            cursor += len(pins)
            try:
                conn = conn or connect(self._store, autocommit=True)
                conn.execute(statement, (pins, [f"fault-{tick}-{pin}" for pin in pins]))
            except (psycopg.Error, CivsyncError):
                self.refused += len(pins)
                if conn is not None:  # a full disk refuses the statement, not the session
                    conn.close()
                conn = None
            delay = start + (tick + 1) * _TICK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if conn is not None:
            conn.close()


def _delivered(run: Pipeline, tag: str, timeout_s: float) -> tuple[int, int]:
    """Changes tagged ``tag`` committed in one store, and how many of them have reached the
    other, once all have or ``timeout_s`` has passed (then the gaps are printed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run.check_alive()
        sent_total, gaps = 0, {}
        for source, source_table, target, target_table, column in _directions(run):
            sent = _writes(source, source_table, column, tag, by_civsync=False)
            seen = _writes(target, target_table, column, tag, by_civsync=True)
            sent_total += len(sent)
            gaps[f"{source_table} -> {target_table}"] = sorted(sent.keys() - seen.keys())
        missing = sum(len(values) for values in gaps.values())
        if not missing or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for where, values in gaps.items():
        if values:
            print(f"{tag}: {where}: {len(values)} not delivered, e.g. {values[:3]}")
    if missing:
        run.dump_threads()
    return sent_total, sent_total - missing


def _duplicates(run: Pipeline) -> int:
    """Rows civsync wrote with the same image as the row's previous write (an apply done
    twice), over both stores."""
    total = 0
    for conn, table in ((run.civil, run.civil_table), (run.population, run.population_table)):
        row = conn.execute(
            _sql(
                "SELECT count(*) FROM (SELECT by_civsync, full_name, permanent_residence,"
                " lag(full_name) OVER w AS last_name, lag(permanent_residence) OVER w AS last_home,"
                " row_number() OVER w AS n FROM {t} WINDOW w AS (PARTITION BY pin ORDER BY at)) x"
                " WHERE by_civsync AND n > 1 AND full_name IS NOT DISTINCT FROM last_name"
                " AND permanent_residence IS NOT DISTINCT FROM last_home",
                f"{table}_writes",
                "pin",
            )
        ).fetchone()
        total += int(str(row[0])) if row else 0
    return total


def _caught_up_s(run: Pipeline, back: datetime) -> float:
    """From the service's return until the last change reached the other store: how long
    the pipeline took to deliver the backlog the outage left (0 if it had none)."""
    last = max(
        max(_writes(target, target_table, column, "fault", by_civsync=True).values())
        for _, _, target, target_table, column in _directions(run)
    )
    return round(max(0.0, (last - back).total_seconds()), 1)
