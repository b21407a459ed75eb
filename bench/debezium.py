"""civsync against Debezium on the same store, broker and rows: capture snapshot, streaming, apply.

Both tools capture a table shaped like civsync's civil ``person`` (pin text key, 13 text
columns, a version, a timestamptz; REPLICA IDENTITY FULL; valid PINs ``001 0 80 nnnnnn``:
province 01, men born in 1980, so the merger's PIN checks pass) in the database
``civsync_bench_dbz`` of the civil-status cluster, into 6-partition topics under a prefix of
this run's own (``dbzbench-<time>``), one tool after the other on a fresh copy of the table:

- snapshot: N rows preloaded; civsync's ``capture run`` (wal2json, incremental snapshot, Avro)
  against Debezium's PostgreSQL connector (pgoutput, ``snapshot.mode=initial``, JSON with
  schemas, in a Connect standalone worker, civsync/services/connect.py); rows/s from the
  start of the process (civsync) or the connector's creation (Debezium) until all N records
  are on the topic;
- streaming: the tool is stopped, M updates are committed (1,000 per transaction), the tool is
  started again (civsync: a new process; Debezium: ``PUT /connectors/<name>/resume``), events/s
  until all M are on the topic. The same backlog method as bench/capture.py;
- apply: Debezium's JDBC sink (upsert, key from the record key) consumes Debezium's topic (N + M
  records) into a pre-created table on the population cluster; civsync's merger and population
  sink (``civsync merge run``, ``civsync sink run population``, as processes) consume civsync's
  topic of the same N + M changes into another such table (mapped by ``pin`` in a config of
  this run's own). Records/s from the connector's creation, or the processes' start, until the
  target holds every row at its last version.

Medians of --runs runs with min and max go to bench/results/debezium.json. Run from the
repository root: ``python -m bench.debezium`` or ``--smoke``. The Connect worker's JVM start is
not timed, and a full run first does one discarded 5,000-row round so the measured ones find a
warm JVM, as a long-lived worker would; each tool's own start-up is timed, as in
bench/capture.py.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from psycopg import sql

from bench import capture
from bench.connect import HOME as CONNECT_HOME
from bench.cpu import cpu_by_component, per_record
from bench.report import summary, write
from civsync.config import CivsyncSettings, load_settings
from civsync.services import LocalServices
from civsync.services.connect import CONNECT_VERSION, DEBEZIUM_VERSION, ConnectWorker
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import Connection, connect
from connectors.registry import SchemaRegistry
from connectors.settings import KafkaSettings, StoreSettings

ROOT = Path(__file__).resolve().parents[1]
DB = "civsync_bench_dbz"
PARTITIONS = 6
# Kafka Connect's workers produce uncompressed (the producer's default); civsync's processes
# in the benchmarks do too (``CIVSYNC_KAFKA__COMPRESSION``, lz4 by default), so both tools
# send the same kind of batches to the same broker.
COMPRESSION = "none"
RATIOS = (
    ("capture snapshot", "snapshot_rows_per_s"),
    ("capture streaming", "streaming_events_per_s"),
    ("apply", "apply_records_per_s"),
)
DDL = (
    "CREATE TABLE {t} (pin text PRIMARY KEY, full_name text NOT NULL, birth_date text, sex text,"
    " place_of_birth text, hometown text, ethnicity text, nationality text, father text,"
    " mother text, marital_status text, spouse text, date_of_death text,"
    " permanent_residence text, version bigint NOT NULL DEFAULT 0,"
    " updated_at timestamptz NOT NULL DEFAULT now())"
)
FILL = (
    "INSERT INTO {t} (pin, full_name, birth_date, sex, place_of_birth, hometown, ethnicity,"
    " nationality, father, mother, marital_status, permanent_residence)"
    " SELECT '001080' || lpad(g::text, 6, '0'), 'Nguyễn Văn Hùng ' || g,"
    " (date '1980-01-01' + (g %% 365)::int)::text, 'male',"
    " lpad((g %% 10000)::text, 5, '0'), lpad((g %% 9000)::text, 5, '0'), 'Kinh', 'VN',"
    " 'Nguyễn Văn Nam ' || g, 'Trần Thị Lan ' || g, 'single',"
    " 'Số ' || g || ' đường Lê Lợi, phường Bến Thành, Thành phố Hồ Chí Minh'"
    " FROM generate_series(%s::bigint, %s::bigint) g"
)
UPDATE = (
    "UPDATE {t} SET full_name = full_name || ' (đã sửa)', version = version + 1,"
    " updated_at = now()"
    " WHERE pin BETWEEN '001080' || lpad(%s::text, 6, '0') AND '001080' || lpad(%s::text, 6, '0')"
)


# A tool's figures: rates and sizes, and CPU µs per record by component (a dict).
Figures = dict[str, Any]


def q(statement: str, table: str) -> sql.Composed:
    return sql.SQL(statement).format(t=sql.Identifier(table))


def bench_store(store: StoreSettings) -> StoreSettings:
    """``store``'s cluster, database ``civsync_bench_dbz`` (created if missing)."""
    with connect(store.model_copy(update={"dbname": "postgres"}), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    return store.model_copy(update={"dbname": DB})


def person_table(conn: Connection, name: str, rows: int = 0) -> str:
    """Create table ``name`` (REPLICA IDENTITY FULL) and fill it with ``rows`` people."""
    conn.execute(q(DDL, name))
    conn.execute(q("ALTER TABLE {t} REPLICA IDENTITY FULL", name))
    for first in range(1, rows + 1, 50_000):
        conn.execute(q(FILL, name), (first, min(first + 49_999, rows)))
    return name


def update(conn: Connection, table: str, rows: int) -> None:
    """Change people 1..``rows`` once each, 1,000 per transaction."""
    for first in range(1, rows + 1, 1000):
        conn.execute(q(UPDATE, table), (first, min(first + 999, rows)))


def _until(done: Callable[[], bool], what: str, timeout_s: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not done after {timeout_s} s")
        time.sleep(0.05)


@dataclass
class Rig:
    """What every run shares: the settings, both bench databases, the broker, the worker."""

    settings: CivsyncSettings
    source: StoreSettings
    target: StoreSettings
    admin: TopicAdmin
    worker: ConnectWorker
    prefix: str

    def on_topic(self, topic: str, count: int) -> Callable[[], bool]:
        return lambda: topic in self.admin.names() and self.admin.end_offsets(topic) >= count

    def record_bytes(self, topic: str, sample: int = 200) -> float:
        """Mean key + value size of the first ``sample`` records of partition 0."""
        consumer = Consumer(
            self.settings.kafka.client_config()
            | {"group.id": self.prefix, "enable.auto.commit": False}
        )
        consumer.assign([TopicPartition(topic, 0, 0)])
        sizes = [
            len(m.key() or b"") + len(m.value() or b"")
            for m in consumer.consume(sample, timeout=10)
            if m.error() is None
        ]
        consumer.close()
        return sum(sizes) / max(1, len(sizes))

    def cleanup(self) -> None:
        """Delete every topic and registry subject under this run's prefix, and every table,
        publication and idle slot of the bench databases (a failed run leaves some)."""
        for store in (self.source, self.target):
            with connect(store, autocommit=True) as conn:
                for (slot,) in conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (DB,)
                ).fetchall():
                    _drop_slot(conn, str(slot))
                for (publication,) in conn.execute("SELECT pubname FROM pg_publication").fetchall():
                    conn.execute(
                        sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(str(publication)))
                    )
                for (table,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                ).fetchall():
                    conn.execute(q("DROP TABLE {t}", str(table)))
                conn.execute("DROP SCHEMA IF EXISTS _civsync CASCADE")
        self.admin.delete(sorted(t for t in self.admin.names() if t.startswith(self.prefix)))
        with SchemaRegistry(self.settings.registry) as registry:
            registry.delete_subjects(s for s in registry.subjects() if s.startswith(self.prefix))


@contextmanager
def _civsync(table: str) -> Iterator[subprocess.Popen[bytes]]:
    """``civsync capture run`` of ``table`` (bench.capture's launcher), stopped on the way out."""
    process = capture._capture(table)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=60)


def civsync_capture(rig: Rig, rows: int, updates: int) -> tuple[Figures, str, str]:
    """civsync's snapshot rows/s and streaming events/s on a fresh ``rows``-row table, the
    topic prefix of this run (its own, so each run's merger starts from empty topics) and the
    captured table's name (the table itself is dropped; its topic stays)."""
    with connect(rig.source, autocommit=True) as conn:
        table = person_table(conn, f"civ_{uuid.uuid4().hex[:8]}", rows)
        prefix = f"{rig.prefix}.{table}"
        os.environ["CIVSYNC_MERGE__TOPIC_PREFIX"] = prefix  # read by bench.capture._capture
        topic = f"{prefix}.civil.{table}"
        started = time.monotonic()
        with _civsync(table) as process:
            _until(rig.on_topic(topic, rows), "civsync snapshot")
            snapshot = rows / (time.monotonic() - started)
            lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()

            def confirmed() -> bool:
                row = conn.execute(
                    "SELECT s.confirmed_flush_lsn >= %s::pg_lsn AND bool_and(j.state = 'done')"
                    " FROM pg_replication_slots s JOIN _civsync.snapshot_jobs j USING (slot_name)"
                    " WHERE s.slot_name = %s GROUP BY s.confirmed_flush_lsn",
                    (lsn[0] if lsn else None, table),
                ).fetchone()
                return bool(row and row[0])

            _until(confirmed, "civsync confirms its snapshot")
            capture._stop(process)
        base = rig.admin.end_offsets(topic)
        update(conn, table, updates)
        cpu_before, started = cpu_by_component(), time.monotonic()
        with _civsync(table) as process:
            _until(rig.on_topic(topic, base + updates), "civsync streaming")
            streaming = updates / (time.monotonic() - started)
            streaming_cpu = per_record(cpu_before, cpu_by_component(), updates)
            peak = capture._stop(process)
        size = rig.record_bytes(topic)
        capture._cleanup(conn, table)
    figures = {
        "snapshot": snapshot,
        "streaming": streaming,
        "streaming_cpu_us": streaming_cpu,
        "peak_rss_mb": peak,
        "bytes": size,
    }
    return figures, prefix, table


PERSON_FIELDS = re.findall(r", (\w+) text", DDL)  # the shared person fields the bench row carries


def _merge_config(path: Path, prefix: str, source: str, target: str) -> Path:
    """A config mapping ``source`` (civil) and ``target`` (population) by ``pin``, every text
    column a field; the residence is population-owned, so last-writer-wins here."""
    columns = "{ " + ", ".join(f'{c} = "{c}"' for c in PERSON_FIELDS) + " }"
    lines = [
        "[merge]",
        f'group = "{prefix}-merger"',
        f'topic_prefix = "{prefix}"',
        f"partitions = {PARTITIONS}",
        "[merge.policy.permanent_residence]",
        'rule = "lww"',
    ]
    for store, table in (("civil", source), ("population", target)):
        lines += ["[[merge.tables]]", f'store = "{store}"', f'table = "public.{table}"']
        lines += ['person_column = "pin"', f"columns = {columns}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def civsync_apply(rig: Rig, prefix: str, source: str, *, rows: int, updated: int) -> Figures:
    """civsync's merger and population sink applying the topic civsync_capture wrote under
    ``prefix`` (``rows`` people, the first ``updated`` renamed once) to a pre-created table:
    records/s from the processes' start until the table holds every row at its last version
    (``apply``), and from the first row written (``apply_steady``)."""
    target = f"tgt_{uuid.uuid4().hex[:8]}"
    env = os.environ | {
        "CIVSYNC_LOG_LEVEL": "WARNING",
        "CIVSYNC_CIVIL__DBNAME": rig.source.dbname,
        "CIVSYNC_POPULATION__DBNAME": rig.target.dbname,
        "CIVSYNC_MERGE__TOPIC_PREFIX": prefix,
    }
    with (
        connect(rig.target, autocommit=True) as conn,
        tempfile.TemporaryDirectory() as tmp,
    ):
        person_table(conn, target)
        config = str(_merge_config(Path(tmp) / "civsync.toml", prefix, source, target))
        cli = [sys.executable, "-m", "civsync.cli"]
        cpu_before, started = cpu_by_component(), time.monotonic()
        processes = [
            subprocess.Popen([*cli, "merge", "run", "--config", config], env=env),
            subprocess.Popen([*cli, "sink", "run", "population", "--config", config], env=env),
        ]
        first: list[tuple[float, int]] = []
        renamed = "% (đã sửa)"

        def applied() -> bool:
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("civsync merger or sink exited")
            row = conn.execute(
                q("SELECT count(*), count(*) FILTER (WHERE full_name LIKE %s) FROM {t}", target),
                (renamed,),
            ).fetchone()
            if row and row[0] and not first:
                first.append((time.monotonic(), int(str(row[0]))))
            return row == (rows, updated)

        try:
            _until(applied, "civsync merger and sink")
            ended = time.monotonic()
            cpu = per_record(cpu_before, cpu_by_component(), rows + updated)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
        conn.execute(q("DROP TABLE {t}", target))
    admin = AdminClient(rig.settings.kafka.client_config())
    for future in admin.delete_consumer_groups(
        [f"{prefix}-merger", f"{prefix}-sink-population"]
    ).values():
        future.result(timeout=30)
    rig.admin.delete(sorted(t for t in rig.admin.names() if t.startswith(prefix + ".")))
    return {
        "apply": (rows + updated) / (ended - started),
        "apply_steady": (rows + updated - first[0][1]) / max(ended - first[0][0], 1e-3),
        "apply_cpu_us": cpu,
    }


def debezium_source(store: StoreSettings, table: str, topic_prefix: str) -> dict[str, str]:
    """Debezium PostgreSQL connector config: pgoutput, its own slot and filtered publication."""
    return {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "tasks.max": "1",
        "database.hostname": store.host,
        "database.port": str(store.port),
        "database.user": store.user,
        "database.password": store.password.get_secret_value(),
        "database.dbname": store.dbname,
        "topic.prefix": topic_prefix,
        "plugin.name": "pgoutput",
        "slot.name": table,
        "publication.name": table,
        "publication.autocreate.mode": "filtered",
        "table.include.list": f"public.{table}",
        "snapshot.mode": "initial",
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": str(PARTITIONS),
    }


def _drop_slot(conn: Connection, slot: str) -> None:
    """Drop ``slot`` once its walsender has gone, and the publication of the same name."""
    _until(
        lambda: (
            not conn.execute(
                "SELECT 1 FROM pg_replication_slots WHERE slot_name = %s AND active", (slot,)
            ).fetchone()
        ),
        f"slot {slot} released",
        timeout_s=60,
    )
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(slot)))


def debezium_capture(rig: Rig, rows: int, updates: int) -> tuple[Figures, str]:
    """Debezium's snapshot rows/s and streaming events/s on a fresh ``rows``-row table, and
    the change topic it wrote (N snapshot records, then ``updates`` updates)."""
    with connect(rig.source, autocommit=True) as conn:
        table = person_table(conn, f"dbz_{uuid.uuid4().hex[:8]}", rows)
        topic, name = f"{rig.prefix}-dbz.public.{table}", f"{table}-source"
        started = time.monotonic()
        rig.worker.create(name, debezium_source(rig.source, table, f"{rig.prefix}-dbz"))
        _until(rig.on_topic(topic, rows), "Debezium snapshot")
        snapshot = rows / (time.monotonic() - started)
        rig.worker.check(name)
        time.sleep(3)  # let the task commit the snapshot's offsets before it is stopped
        rig.worker.pause(name)
        _until(lambda: rig.worker.status(name)["connector"]["state"] == "STOPPED", "stop")
        base = rig.admin.end_offsets(topic)
        update(conn, table, updates)
        cpu_before, started = cpu_by_component(), time.monotonic()
        rig.worker.resume(name)
        _until(rig.on_topic(topic, base + updates), "Debezium streaming")
        streaming = updates / (time.monotonic() - started)
        streaming_cpu = per_record(cpu_before, cpu_by_component(), updates)
        time.sleep(1)
        extra = rig.admin.end_offsets(topic) - base - updates
        rig.worker.delete(name)
        _drop_slot(conn, table)
        conn.execute(q("DROP TABLE {t}", table))
    result = {
        "snapshot": snapshot,
        "streaming": streaming,
        "streaming_cpu_us": streaming_cpu,
        "bytes": rig.record_bytes(topic),
    }
    if extra:
        raise RuntimeError(f"Debezium wrote {extra} records more than expected (re-snapshot?)")
    return result, topic


def debezium_apply(
    worker: ConnectWorker,
    kafka: KafkaSettings,
    topic: str,
    target: StoreSettings,
    *,
    rows: int,
    updated: int,
) -> Figures:
    """Debezium's JDBC sink applying ``topic`` (``rows`` people, the first ``updated`` of them
    changed once) to a pre-created table in ``target``: records/s from the connector's creation
    until the table holds every row at its last version (``apply``), and from the first row
    written (``apply_steady``, without the sink's start-up)."""
    table, name = f"sink_{uuid.uuid4().hex[:8]}", f"sink-{uuid.uuid4().hex[:8]}"
    with connect(target, autocommit=True) as conn:
        person_table(conn, table)
        cpu_before, started = cpu_by_component(), time.monotonic()
        worker.create(
            name,
            {
                "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
                "tasks.max": "1",
                "topics": topic,
                "connection.url": f"jdbc:postgresql://{target.host}:{target.port}/{target.dbname}",
                "connection.username": target.user,
                "connection.password": target.password.get_secret_value(),
                "insert.mode": "upsert",
                "primary.key.mode": "record_key",
                "schema.evolution": "none",
                "collection.name.format": table,
                "consumer.override.auto.offset.reset": "earliest",
            },
        )

        first: list[tuple[float, int]] = []  # (when, rows present) at the first sight of one

        def applied() -> bool:
            worker.check(name)
            row = conn.execute(
                q("SELECT count(*), count(*) FILTER (WHERE version = 1) FROM {t}", table)
            ).fetchone()
            if row and row[0] and not first:
                first.append((time.monotonic(), int(str(row[0]))))
            return row == (rows, updated)

        _until(applied, "Debezium JDBC sink")
        ended = time.monotonic()
        rate = {
            "apply": (rows + updated) / (ended - started),
            "apply_steady": (rows + updated - first[0][1]) / max(ended - first[0][0], 1e-3),
            "apply_cpu_us": per_record(cpu_before, cpu_by_component(), rows + updated),
        }
        worker.delete(name)
        conn.execute(q("DROP TABLE {t}", table))
    admin = AdminClient(kafka.client_config())
    for future in admin.delete_consumer_groups([f"connect-{name}"]).values():
        future.result(timeout=30)
    return rate


def one_run(rig: Rig, rows: int, updates: int) -> dict[str, Any]:
    civ, prefix, table = civsync_capture(rig, rows, updates)
    civ |= civsync_apply(rig, prefix, table, rows=rows, updated=updates)
    dbz, topic = debezium_capture(rig, rows, updates)
    dbz |= debezium_apply(
        rig.worker, rig.settings.kafka, topic, rig.target, rows=rows, updated=updates
    )
    rig.admin.delete([topic])
    return {"civsync": civ, "debezium": dbz}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="snapshot rows")
    parser.add_argument("--updates", type=int, default=100_000, help="streamed updates")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.updates, args.runs = 2_000, 1_000, 1
    args.updates = min(args.updates, args.rows)
    os.environ["CIVSYNC_KAFKA__COMPRESSION"] = COMPRESSION
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    prefix = f"dbzbench-{time.strftime('%Y%m%d%H%M%S')}"
    source, target = bench_store(settings.civil), bench_store(settings.population)
    # civsync's capture processes (bench.capture._capture) read these.
    os.environ["CIVSYNC_CIVIL__DBNAME"] = source.dbname
    os.environ["CIVSYNC_MERGE__TOPIC_PREFIX"] = prefix
    runs = []
    with ConnectWorker(settings.kafka, prefix, home=CONNECT_HOME) as worker:
        rig = Rig(settings, source, target, TopicAdmin(settings.kafka), worker, prefix)
        try:
            if not args.smoke:  # JIT-compile the worker's hot paths, as in a long-lived worker
                one_run(rig, 5_000, 5_000)
            for n in range(1, args.runs + 1):
                runs.append(one_run(rig, args.rows, args.updates))
                print(f"run {n}: {runs[-1]}", flush=True)
        finally:
            rig.cleanup()

    def figure(tool: str, key: str) -> dict[str, float]:
        return summary([r[tool][key] for r in runs])

    result: dict[str, Any] = {
        "workload": {
            "snapshot_rows": args.rows,
            "streamed_updates": args.updates,
            "runs": args.runs,
            "row": "person-like: pin text key, 13 text columns, version bigint, timestamptz",
            "partitions": PARTITIONS,
        },
        "versions": {"debezium": DEBEZIUM_VERSION, "kafka_connect": CONNECT_VERSION},
        "civsync": {
            "format": "Avro (registry wire format), wal2json, incremental snapshot",
            "snapshot_rows_per_s": figure("civsync", "snapshot"),
            "streaming_events_per_s": figure("civsync", "streaming"),
            "apply_records_per_s": figure("civsync", "apply"),
            "apply_steady_records_per_s": figure("civsync", "apply_steady"),
            "peak_rss_mb": figure("civsync", "peak_rss_mb"),
            "record_bytes": figure("civsync", "bytes"),
        },
        "debezium": {
            "format": "JSON with schemas (JsonConverter), pgoutput, snapshot.mode=initial",
            "snapshot_rows_per_s": figure("debezium", "snapshot"),
            "streaming_events_per_s": figure("debezium", "streaming"),
            "jdbc_sink_records_per_s": figure("debezium", "apply"),
            "jdbc_sink_steady_records_per_s": figure("debezium", "apply_steady"),
            "record_bytes": figure("debezium", "bytes"),
        },
        "cpus": os.cpu_count(),
    }
    result["debezium"]["apply_records_per_s"] = result["debezium"]["jdbc_sink_records_per_s"]
    for label, key in RATIOS:
        ratio = result["civsync"][key]["median"] / result["debezium"][key]["median"]
        result[f"ratio_{key}"] = ratio
        print(f"civsync/Debezium {label}: {ratio:.2f}")
    write("debezium", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
