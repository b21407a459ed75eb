"""A whole civsync pipeline for tests: both stores' capture, merger(s) and both sinks, each
a real `civsync` process on the real services, with tables and topics of its own.

Each part logs in as ``civsync run`` would start it (``part_env``), so that a part reaching
beyond its rights fails its test. When Kafka is reached with SASL (the tests' local services),
the pipeline provisions each part's Kafka user with exactly its ACLs for the pipeline's topics
and groups, as ``admin`` (``ensure_users``), and each part logs in as its own user. Each sink
connects to its store with its own role, granted the pipeline's tables as the owner
(``ensure_roles``). The captures connect as the owner: a ``--table`` capture alters its own
``FOR TABLE`` publication, which only the tables' owner may (docs/security.md)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from psycopg import sql

from civsync.config import CivsyncSettings, load_settings
from civsync.runner import kafka_part_env, part_env
from connectors.kafka.admin import TopicAdmin
from connectors.kafka.security import ensure_users
from connectors.merge.settings import MergeSettings
from connectors.migrations import ensure_roles
from connectors.postgres import Connection
from connectors.settings import KafkaSettings
from tests.integration.capture_support import (
    capture_process,
    civsync_process,
    drop_slot,
    q,
    wait_caught_up,
)

_PERSON, _CITIZEN = MergeSettings().person_tables()
CIVIL_COLUMNS, POPULATION_COLUMNS = dict(_PERSON.columns), dict(_CITIZEN.columns)
SHARED = sorted(set(CIVIL_COLUMNS) & set(POPULATION_COLUMNS))
_TYPES = {"birth_date": "date", "date_of_death": "date"}

T = TypeVar("T")


def _table_ddl(
    table: str, columns: dict[str, str], *, own_key: bool, not_null: tuple[str, ...] = ()
) -> sql.Composed:
    key = "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, pin text UNIQUE NOT NULL"
    body = ", ".join(
        f"{c} {_TYPES.get(c, 'text')}{' NOT NULL' if c in not_null else ''}"
        for c in columns.values()
    )
    head = key if own_key else "pin text PRIMARY KEY"
    return q(f"CREATE TABLE {{t}} ({head}, {body})", table)


def _write_log_ddl(table: str) -> list[sql.Composed]:
    """Every write to ``table`` logged with whether civsync made it (a bound origin), the
    name and residence written, and when (for end-to-end latency)."""
    log, fn = f"{table}_writes", f"{table}_log_write"
    return [
        q(
            "CREATE TABLE {t} (pin text, by_civsync boolean, full_name text,"
            " permanent_residence text, at timestamptz DEFAULT clock_timestamp())",
            log,
        ),
        # the benchmark looks values up by tag prefix (LIKE 'tag-%')
        q("CREATE INDEX ON {t} (full_name text_pattern_ops)", log),
        q("CREATE INDEX ON {t} (permanent_residence text_pattern_ops)", log),
        sql.SQL(  # as the owner: a sink's role may write the person table, not this log
            "CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN"
            " INSERT INTO {log} (pin, by_civsync, full_name, permanent_residence)"
            " VALUES (NEW.pin, pg_replication_origin_session_is_setup(), NEW.full_name,"
            " NEW.permanent_residence); RETURN NEW; END $$"
        ).format(fn=sql.Identifier(fn), log=sql.Identifier(log)),
        sql.SQL(
            "CREATE TRIGGER log_write AFTER INSERT OR UPDATE ON {t}"
            " FOR EACH ROW EXECUTE FUNCTION {fn}()"
        ).format(t=sql.Identifier(table), fn=sql.Identifier(fn)),
    ]


@dataclass
class Pipeline:
    """Names and processes of one test's pipeline. ``civil``/``population`` are connections."""

    name: str
    civil: Connection
    population: Connection
    config: Path
    capture_args: tuple[str, ...] = ()  # more arguments of `civsync capture run`
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    settings: CivsyncSettings = field(init=False)

    def __post_init__(self) -> None:
        self.settings = load_settings(self.config)  # the environment's services, this config

    @property
    def civil_table(self) -> str:
        return f"{self.name}_person"

    @property
    def population_table(self) -> str:
        return f"{self.name}_citizen"

    @property
    def topic_prefix(self) -> str:
        return f"{self.name}.civsync"

    def start(self, role: str) -> None:
        """Start ``role``: capture-civil, capture-population, merger-<instance>, sink-<store>."""
        config = ("--config", str(self.config))
        login = self.login(role)
        kind, _, what = role.partition("-")
        if kind == "capture":
            table = self.civil_table if what == "civil" else self.population_table
            process = capture_process(table, *config, *self.capture_args, store=what, env=login)
        elif kind == "merger":
            process = civsync_process("merge", "run", *config, "--instance", what, env=login)
        else:
            process = civsync_process("sink", "run", what, *config, env=login)
        self.processes[role] = process

    def login(self, role: str) -> dict[str, str]:
        """The environment that logs ``role`` in as itself: its Kafka user, and a sink's
        store role."""
        return (
            part_env(self.settings, role)
            if role.startswith("sink-")
            else kafka_part_env(self.settings, role)
        )

    def kill(self, role: str) -> None:
        process = self.processes.pop(role)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def stop_all(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()

    def dump_threads(self) -> None:
        """Print where each part is (py-spy, if installed beside this interpreter): for a
        pipeline that stopped delivering with nothing in its logs."""
        spy = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        for role, process in self.processes.items():
            if spy is None:
                print(f"{role}: pid {process.pid} (install py-spy to see its threads)")
                continue
            dump = subprocess.run(
                [spy, "dump", "--pid", str(process.pid)],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            print(f"--- {role} (pid {process.pid})\n{dump.stdout}{dump.stderr}")

    def check_alive(self) -> None:
        dead = {role: p.returncode for role, p in self.processes.items() if p.poll() is not None}
        assert not dead, f"pipeline processes exited: {dead}"

    def rows(self, store: str) -> dict[str, dict[str, Any]]:
        """Every person row of ``store``'s table, by PIN, shared fields only, as text."""
        conn, table = (
            (self.civil, self.civil_table)
            if store == "civil"
            else (self.population, self.population_table)
        )
        columns = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in SHARED)
        cursor = conn.execute(
            sql.SQL("SELECT pin, {} FROM {}").format(columns, sql.Identifier(table))
        )
        return {str(row[0]): dict(zip(SHARED, row[1:], strict=True)) for row in cursor}

    def disagreements(self) -> dict[str, tuple[Any, Any]]:
        civil, population = self.rows("civil"), self.rows("population")
        return {
            pin: (civil.get(pin), population.get(pin))
            for pin in set(civil) | set(population)
            if civil.get(pin) != population.get(pin)
        }

    def settle(self, kafka: KafkaSettings, timeout_s: float = 90.0) -> None:
        """Until changes have stopped flowing: both slots caught up, civsync.person unchanged
        for two seconds and the stores in agreement (or the timeout: then fail)."""
        wait_caught_up(self.civil, self.civil_table, timeout_s)
        wait_caught_up(self.population, self.population_table, timeout_s)
        person_topic, topics = f"{self.topic_prefix}.person", TopicAdmin(kafka)

        def quiet() -> bool:
            self.check_alive()
            before = topics.end_offsets(person_topic)
            time.sleep(2.0)
            return topics.end_offsets(person_topic) == before and not self.disagreements()

        try:
            wait_for(quiet, "the pipeline settles with the stores agreeing", timeout_s=timeout_s)
        except AssertionError:
            self.dump_threads()
            raise

    def writes(self, store: str) -> list[tuple[str, bool]]:
        conn = self.civil if store == "civil" else self.population
        table = self.civil_table if store == "civil" else self.population_table
        log = conn.execute(q("SELECT pin, by_civsync FROM {t} ORDER BY at", f"{table}_writes"))
        return [(str(pin), bool(by)) for pin, by in log]


def write_config(path: Path, name: str, *, partitions: int = 3) -> Path:
    civil, population = f"{name}_person", f"{name}_citizen"
    lines = [
        "[merge]",
        f'group = "{name}-merger"',
        f'topic_prefix = "{name}.civsync"',
        f"partitions = {partitions}",
        "batch = 500",
        f'state_dir = "{path.parent / "state"}"',
    ]
    for store, table, columns in (
        ("civil", civil, CIVIL_COLUMNS),
        ("population", population, POPULATION_COLUMNS),
    ):
        lines += [
            "[[merge.tables]]",
            f'store = "{store}"',
            f'table = "public.{table}"',
            'person_column = "pin"',
            "columns = { " + ", ".join(f'{k} = "{v}"' for k, v in columns.items()) + " }",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


@contextmanager
def pipeline(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    name: str,
    *,
    mergers: int = 1,
    not_null: tuple[str, ...] = (),
    not_null_in: tuple[str, ...] = ("civil", "population"),
    seed: Callable[[Pipeline], None] | None = None,
    capture_args: tuple[str, ...] = (),
    wait: bool = True,
) -> Iterator[Pipeline]:
    """Tables in both stores (``not_null`` columns required in the stores ``not_null_in``, as
    the profile's stores require a name), rows ``seed`` writes before capture starts, then
    capture, ``mergers`` merger processes and both sinks."""
    config = write_config(tmp_path / "civsync.toml", name)
    run = Pipeline(name, civil, population, config, capture_args)
    for store, conn, table, columns, own_key in (
        ("civil", civil, run.civil_table, CIVIL_COLUMNS, True),
        ("population", population, run.population_table, POPULATION_COLUMNS, False),
    ):
        required = not_null if store in not_null_in else ()
        conn.execute(_table_ddl(table, columns, own_key=own_key, not_null=required))
        conn.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", table))
        for statement in _write_log_ddl(table):
            conn.execute(statement)
    roles = ["capture-civil", "capture-population", "sink-civil", "sink-population"]
    roles += [f"merger-{n}" for n in range(mergers)]
    if run.settings.kafka.logs_in:  # as admin: its users' ACLs for this pipeline alone
        ensure_users(run.settings.kafka, run.settings.kafka_users, run.settings.merge)
    for store, conn in (("civil", civil), ("population", population)):
        ensure_roles(conn, store, run.settings.roles, run.settings.merge)  # each sink's grants
    try:
        if seed is not None:
            seed(run)
        for role in roles:
            run.start(role)
        if wait:  # the slots exist: every change from now is captured
            wait_caught_up(civil, run.civil_table)
            wait_caught_up(population, run.population_table)
        yield run
    finally:
        run.stop_all()
        drop_slot(run.civil, run.civil_table)  # a test may have connected again
        drop_slot(run.population, run.population_table)


def wait_for(
    check: Callable[[], T], what: str, *, timeout_s: float = 90.0, every: float = 0.3
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f}s (last: {result!r})")
        time.sleep(every)
