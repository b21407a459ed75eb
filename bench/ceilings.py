"""Hardware ceilings: what PostgreSQL and Kafka do on this machine with no sync engine in the way.

Same row shape as bench/debezium.py (person-like, REPLICA IDENTITY FULL), in the bench's own
database ``civsync_bench_dbz`` on each cluster:

- upsert: rows rendered to COPY text beforehand, then per 5,000-row transaction COPY into a
  temporary staging table and ``INSERT ... ON CONFLICT (pin) DO UPDATE`` into the population
  cluster; rows/s for new rows (inserts) and again for the same rows (updates);
- decoding: N updates (1,000 per transaction) on the civil-status cluster, drained through a
  server-side cursor from a wal2json slot (format 2, as civsync reads it) and from a pgoutput
  slot (protocol 1, as Debezium reads it, here through the SQL function); changes/s;
- produce: Kafka's own ``ProducerPerformance`` (kafka-tools 4.1.1, Java) and a bare
  confluent-kafka loop from Python, both with civsync's producer settings (acks=all, idempotent,
  linger 5 ms, lz4; Java with librdkafka's 1 MB batch size) and random payloads of the
  record sizes bench/debezium.py measured (civsync Avro, Debezium JSON), to a 6-partition
  topic of their own; records/s.

Medians of --runs runs with min and max go to bench/results/ceilings.json. Run from the
repository root: ``python -m bench.ceilings`` or ``--smoke``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import string
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from bench.connect import HOME
from bench.debezium import COMPRESSION, DDL, PARTITIONS, bench_store, person_table, q, update
from bench.report import RESULTS, summary, write
from civsync.config import load_settings
from civsync.services import LocalServices
from civsync.services.connect import tools
from civsync.services.kafka import properties_line
from connectors.kafka.avro import PRODUCER_DEFAULTS
from connectors.postgres import Connection, connect
from connectors.settings import KafkaSettings, StoreSettings

_PRODUCER = {**PRODUCER_DEFAULTS, "compression.type": COMPRESSION}  # civsync's, as benchmarked

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = re.findall(r"[(,] ?(\w+) ", DDL)
BATCH = 5_000


def _upsert(table: str) -> sql.Composed:
    """INSERT every staged row into ``table``, each existing one's columns overwritten."""
    return sql.SQL(
        "INSERT INTO {t} SELECT * FROM stage ON CONFLICT (pin) DO UPDATE SET {columns}"
    ).format(
        t=sql.Identifier(table),
        columns=sql.SQL(", ").join(
            sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(c)) for c in COLUMNS if c != "pin"
        ),
    )


def _copy_text(first: int, count: int, version: int) -> str:
    return "".join(
        f"{n:012d}\tNguyễn Thị Hương {n}\t1980-01-{n % 28 + 1:02d}\t{'mf'[n % 2]}\t{n % 10000:05d}"
        f"\t{n % 9000:05d}\tKinh\tVN\tNguyễn Văn Nam {n}\tTrần Thị Lan {n}\tsingle\t\\N\t\\N"
        f"\tSố {n} đường Lê Lợi, phường Bến Thành, Thành phố Hồ Chí Minh\t{version}"
        "\t2026-01-01 00:00:00+00\n"
        for n in range(first, first + count)
    )


def upsert_rates(store: StoreSettings, rows: int) -> tuple[float, float]:
    """(inserts/s, updates/s) of COPY + INSERT ... ON CONFLICT, ``BATCH`` rows a transaction."""
    with connect(store, autocommit=True) as conn:
        table = person_table(conn, f"ceil_{uuid.uuid4().hex[:8]}")
        conn.execute(q("CREATE TEMP TABLE stage (LIKE {t}) ON COMMIT DELETE ROWS", table))
        rates, upsert = [], _upsert(table)
        for version in (0, 1):
            batches = [
                _copy_text(first, min(BATCH, rows - first + 1), version)
                for first in range(1, rows + 1, BATCH)
            ]
            started = time.monotonic()
            for text in batches:
                with conn.transaction(), conn.cursor() as cur:
                    with cur.copy("COPY stage FROM STDIN") as copy:
                        copy.write(text)
                    cur.execute(upsert)
            rates.append(rows / (time.monotonic() - started))
        conn.execute(q("DROP TABLE {t}", table))
    return rates[0], rates[1]


def _drain(conn: Connection, query: str, args: tuple[str, ...]) -> int:
    count = 0
    with conn.transaction(), conn.cursor(name="drain") as cur:
        cur.itersize = 10_000
        cur.execute(query, args)
        for _ in cur:
            count += 1
    return count


def decoding_rates(store: StoreSettings, changes: int) -> tuple[float, float]:
    """(wal2json, pgoutput) changes/s draining ``changes`` updates from a fresh slot each."""
    with connect(store, autocommit=True) as conn:
        table = person_table(conn, f"ceil_{uuid.uuid4().hex[:8]}", changes)
        conn.execute(q("CREATE PUBLICATION {t} FOR TABLE {t}", table))
        plugins = {"wal2json": f"{table}_w", "pgoutput": f"{table}_p"}
        for plugin, slot in plugins.items():
            conn.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, plugin))
        update(conn, table, changes)
        rates = []
        for query, args in (
            (
                "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, NULL,"
                " 'format-version', '2')",
                (plugins["wal2json"],),
            ),
            (
                "SELECT data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
                " 'proto_version', '1', 'publication_names', %s)",
                (plugins["pgoutput"], table),
            ),
        ):
            started = time.monotonic()
            read = _drain(conn, query, args)
            rates.append(changes / (time.monotonic() - started))
            if read < changes:
                raise RuntimeError(f"decoded {read} rows, expected at least {changes}")
        for slot in plugins.values():
            conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        conn.execute(sql.SQL("DROP PUBLICATION {}").format(sql.Identifier(table)))
        conn.execute(q("DROP TABLE {t}", table))
    return rates[0], rates[1]


def java_produce(kafka: KafkaSettings, topic: str, records: int, size: int) -> float:
    """Records/s of Kafka's ProducerPerformance with civsync's producer settings."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("java is not installed")
    # librdkafka batches up to 1 MB per partition by default, the Java client 16 KB: the same
    # limit for both, so the figure is the broker's and not the Java client's default.
    props = {**_PRODUCER, "batch.size": 1_000_000, **kafka.java_properties()}
    with tempfile.TemporaryDirectory() as private:  # the config holds the login
        config = Path(private) / "producer.properties"
        config.write_text("\n".join(properties_line(k, _java(v)) for k, v in props.items()))
        out = _producer_performance(java, config, topic, records, size)
    found = re.findall(r"(\d+) records sent, ([\d.]+) records/sec", out)
    if not found:
        raise RuntimeError(f"no summary from ProducerPerformance: {out[-500:]}")
    return float(found[-1][1])


def _java(value: object) -> str:
    """A producer setting as the Java client reads it (``true``, not ``True``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def _producer_performance(java: str, config: Path, topic: str, records: int, size: int) -> str:
    return subprocess.run(
        [
            java,
            "-Xmx512m",
            "-cp",
            f"{tools(HOME) / 'lib'}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(size),
            "--throughput",
            "-1",
            "--producer.config",
            str(config),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def python_produce(kafka: KafkaSettings, topic: str, records: int, size: int) -> float:
    """Records/s of a bare confluent-kafka produce loop (payloads built before timing)."""
    producer = Producer({**_PRODUCER, **kafka.client_config()})
    letters = string.ascii_uppercase.encode()
    payloads = [bytes(random.choices(letters, k=size)) for _ in range(1000)]  # noqa: S311
    started = time.monotonic()
    for n in range(records):
        while True:
            try:
                producer.produce(topic, payloads[n % 1000])
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    return records / (time.monotonic() - started)


def record_sizes() -> dict[str, int]:
    """Record sizes bench/debezium.py measured (full run, else smoke), else typical ones."""
    for name in ("debezium.json", "debezium-smoke.json"):
        path = RESULTS / name
        if path.is_file():
            found = json.loads(path.read_text())
            return {
                tool: round(found[tool]["record_bytes"]["median"])
                for tool in ("civsync", "debezium")
            }
    return {"civsync": 840, "debezium": 5080}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="upserted rows, decoded changes")
    parser.add_argument("--records", type=int, default=500_000, help="produced records")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.records, args.runs = 5_000, 20_000, 1
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    source, target = bench_store(settings.civil), bench_store(settings.population)
    kafka, sizes = settings.kafka, record_sizes()
    topic = f"dbzbench-ceilings-{time.strftime('%Y%m%d%H%M%S')}"
    admin = AdminClient(kafka.client_config())
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(timeout=30)
    figures: dict[str, list[float]] = {}
    try:
        for run in range(1, args.runs + 1):
            found = dict(
                zip(
                    ("upsert_insert", "upsert_update"), upsert_rates(target, args.rows), strict=True
                )
            )
            found |= zip(("wal2json", "pgoutput"), decoding_rates(source, args.rows), strict=True)
            for tool, size in sizes.items():
                found[f"java_produce_{tool}"] = java_produce(kafka, topic, args.records, size)
                found[f"python_produce_{tool}"] = python_produce(kafka, topic, args.records, size)
            print(f"run {run}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in found.items()))
            for key, value in found.items():
                figures.setdefault(key, []).append(value)
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)
    result: dict[str, Any] = {
        "workload": {
            "rows": args.rows,
            "records": args.records,
            "runs": args.runs,
            "record_bytes": sizes,
            "upsert_batch": BATCH,
            "producer": {k: str(v) for k, v in _PRODUCER.items()},
            "java_batch_size": 1_000_000,
        },
        "pg_upsert_insert_rows_per_s": summary(figures["upsert_insert"]),
        "pg_upsert_update_rows_per_s": summary(figures["upsert_update"]),
        "wal2json_decode_changes_per_s": summary(figures["wal2json"]),
        "pgoutput_decode_changes_per_s": summary(figures["pgoutput"]),
        **{
            f"{client}_produce_{tool}_records_per_s": summary(figures[f"{client}_produce_{tool}"])
            for client in ("java", "python")
            for tool in sizes
        },
        "cpus": os.cpu_count(),
    }
    write("ceilings", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
