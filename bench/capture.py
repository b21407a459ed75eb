"""Capture benchmark: streaming events/s, snapshot rows/s and peak RSS of the capture process.

Streaming: N row changes are committed (transactions of 1,000 rows) while capture is stopped,
then `civsync capture run` is started and timed until its slot has confirmed them all.
Snapshot: a table of M rows gets a fresh slot; capture reads it through the initial
(incremental, DBLog) snapshot and is timed until the job is done.
Each figure is the median of --runs runs, with min and max; results go to
bench/results/capture.json. Run from the repository root: `python -m bench.capture` (full)
or `--smoke`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from psycopg import sql

from bench.report import summary, write
from civsync.config import CivsyncSettings, load_settings
from civsync.services import LocalServices
from connectors.capture.publisher import topic_for
from connectors.capture.slot import ReplicationSlot
from connectors.capture.stream import forget, prepare
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import Connection, connect
from connectors.settings import KafkaSettings

ROOT = Path(__file__).resolve().parents[1]
DDL = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, full_name text, birth_date date,"
    " commune_code text, version bigint NOT NULL DEFAULT 0)"
)
FILL = (
    "INSERT INTO {t} SELECT g, 'Nguyễn Thị Hương ' || g, date '1950-01-01' + (g %% 25000)::int,"
    " lpad((g %% 10000)::text, 5, '0'), 0 FROM generate_series(%s::bigint, %s::bigint) g"
)


def _q(statement: str, table: str) -> sql.Composed:
    return sql.SQL(statement).format(t=sql.Identifier(table))


def _new_table(conn: Connection, prefix: str) -> str:
    name = f"bench_{prefix}_{uuid.uuid4().hex[:8]}"
    conn.execute(_q(DDL, name))
    conn.execute(_q("ALTER TABLE {t} REPLICA IDENTITY FULL", name))
    return name


def _fill(conn: Connection, table: str, rows: int, txn_rows: int = 1000) -> None:
    for first in range(1, rows + 1, txn_rows):
        conn.execute(_q(FILL, table), (first, min(first + txn_rows - 1, rows)))


def _capture(table: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "civsync.cli",
            "capture",
            "run",
            "civil",
            "--slot",
            table,
            "--table",
            f"public.{table}",
            "--partitions",
            "6",
        ],
        env={**os.environ, "CIVSYNC_LOG_LEVEL": "WARNING"},
    )


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _stop(process: subprocess.Popen[bytes]) -> float:
    rss = _peak_rss_mb(process.pid)
    process.terminate()
    process.wait(timeout=60)
    return rss


def _until(predicate: object, timeout_s: float = 1800.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise TimeoutError("capture did not finish in time")
        time.sleep(0.05)


def _cleanup(conn: Connection, table: str) -> None:
    """Drop the run's slot and table (bench.debezium reads the topic on, so it stays)."""
    forget(conn, table)
    conn.execute(_q("DROP TABLE {t}", table))


def _drop_topic(kafka: KafkaSettings, table: str) -> None:
    """Leftover topics would load the broker of later runs."""
    TopicAdmin(kafka).delete([topic_for("civil", "public", table)])


def streaming_run(settings: CivsyncSettings, events: int) -> tuple[float, float]:
    """(events/s, peak RSS MB) for a backlog of ``events`` inserts."""
    with connect(settings.civil, autocommit=True) as conn:
        table = _new_table(conn, "stream")
        prepare(conn, ReplicationSlot(table, (f"public.{table}",)))
        # The table was empty when the slot was made: its initial snapshot has nothing to
        # read, and must not re-read the backlog this run measures as a stream.
        conn.execute("DELETE FROM _civsync.snapshot_jobs WHERE slot_name = %s", (table,))
        _fill(conn, table, events)
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        started = time.monotonic()
        process = _capture(table)

        def confirmed() -> bool:
            row = conn.execute(
                "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots WHERE slot_name = %s",
                (target[0] if target else None, table),
            ).fetchone()
            return bool(row and row[0])

        _until(confirmed)
        elapsed = time.monotonic() - started
        rss = _stop(process)
        _cleanup(conn, table)
        _drop_topic(settings.kafka, table)
    return events / elapsed, rss


def snapshot_run(settings: CivsyncSettings, rows: int) -> tuple[float, float]:
    """(rows/s, peak RSS MB) for the initial snapshot of a ``rows``-row table."""
    with connect(settings.civil, autocommit=True) as conn:
        table = _new_table(conn, "snap")
        _fill(conn, table, rows, txn_rows=100_000)
        started = time.monotonic()
        process = _capture(table)

        def done() -> bool:
            row = conn.execute(
                "SELECT bool_and(state = 'done') FROM _civsync.snapshot_jobs WHERE slot_name = %s",
                (table,),
            ).fetchone()
            return bool(row and row[0])

        _until(done)
        elapsed = time.monotonic() - started
        rss = _stop(process)
        _cleanup(conn, table)
        _drop_topic(settings.kafka, table)
    return rows / elapsed, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.rows, args.runs = 5_000, 5_000, 1
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    stream, snap, rss = [], [], []
    for run in range(1, args.runs + 1):
        rate, peak = streaming_run(settings, args.events)
        stream.append(rate)
        rss.append(peak)
        print(f"run {run}: streaming {rate:,.0f} events/s (peak RSS {peak:.0f} MB)", flush=True)
        rate, peak = snapshot_run(settings, args.rows)
        snap.append(rate)
        rss.append(peak)
        print(f"run {run}: snapshot {rate:,.0f} rows/s (peak RSS {peak:.0f} MB)", flush=True)
    result = {
        "workload": {
            "events": args.events,
            "snapshot_rows": args.rows,
            "runs": args.runs,
            "row": "bigint key, name text, date, commune code text, version bigint",
        },
        "capture_events_per_s": summary(stream),
        "snapshot_rows_per_s": summary(snap),
        "peak_rss_mb": summary(rss),
        "cpus": os.cpu_count(),
    }
    write("capture", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
