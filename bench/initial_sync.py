"""Initial sync: two stores that already hold N people each, until they agree on everyone.

Each run creates two databases of its own (one per store, migrated) and seeds both with N
generated people as the demo does (civsync.demo: birth act for everyone, marriage acts,
households, 4 % legacy records and 5 % deliberate mismatches), before any civsync process
runs. Then the whole engine starts as real processes with its default settings
(civsync.runner: capture of both stores on fresh slots, the merger and both sinks, on topics
under a fresh prefix) and the clock runs from its start until both stores agree on every
shared field of every person.

Agreement is checked in SQL: each store gives a 64-bit hash of each person's shared fields
(hash_record_extended; 0.3 s per 100,000 people and store here) and the script counts the PINs
whose hashes are equal, every 3 s (or 3 times as long as a check took, so checking stays a
small share of the machine), printing progress. A run that has not agreed after --timeout
(default 120 s + 6 ms per person: 102 min for 1,000,000, about 1.4 times the slowest time per
person measured at 100,000) ends with "did not converge" and the count reached; the engine's
logs are then kept in .run/bench_initial_sync/<run>/logs.

Per run: seed time (not counted), time to agreement (the start of the first check that found
it; the check before it bounds it from below: `resolution_s`), people/s, records through the
merger when the stores agreed (change events on the capture topics in, records on the person
topic out, transaction markers included), and each engine process's peak RSS (VmHWM, read just
before it is stopped). Medians with min and max over the runs that converged go to
bench/results/initial_sync.json. Everything a run creates is removed: databases, slots,
topics, consumer groups and registry subjects.

Run from the repository root: `python -m bench.initial_sync` (1,000,000 people, 1 run),
`--people N --runs R`, or `--smoke` (2,000 people, for CI).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from psycopg import sql
from rich.console import Console

from bench.capture import _peak_rss_mb
from bench.report import summary, write
from civsync.config import CivsyncSettings, load_settings
from civsync.demo import SHARED, TABLES, Demo
from civsync.runner import EngineProcesses, engine_config, roles
from civsync.services import LocalServices
from connectors.kafka.admin import TopicAdmin
from connectors.migrations import drop, recreate
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from connectors.settings import StoreSettings

ROOT = Path(__file__).resolve().parents[1]
RUN_DIR = ROOT / ".run" / "bench_initial_sync"  # each run's config and logs, kept if it fails
_EVERY_S = 3.0


def _digests(store: StoreSettings, table: str) -> dict[str, object]:
    """PIN -> a 64-bit hash of the person's shared fields, computed in the store (the columns
    have the same types in both stores, so equal values hash alike)."""
    fields = sql.SQL(", ").join(map(sql.Identifier, SHARED))
    query = sql.SQL(
        "SELECT pin, hash_record_extended(ROW({}), 0) FROM {} WHERE pin IS NOT NULL"
    ).format(fields, sql.Identifier(table))
    with connect(store, autocommit=True) as conn:
        return {str(pin): digest for pin, digest in conn.execute(query)}


def _agreeing(stores: dict[str, StoreSettings]) -> tuple[int, int]:
    """(people equal on every shared field in both stores, people in either store)."""
    with ThreadPoolExecutor(2) as pool:  # both stores at once
        civil, population = pool.map(
            lambda s: _digests(stores[s], TABLES[s]), ("civil", "population")
        )
    agreeing = sum(1 for pin, digest in population.items() if civil.get(pin) == digest)
    return agreeing, len(civil.keys() | population.keys())


def _until_agreed(
    stores: dict[str, StoreSettings],
    engine: EngineProcesses,
    started: float,
    timeout_s: float,
    agreeing_before: int,
) -> tuple[float, float, int]:
    """Until both stores agree or ``timeout_s`` has passed: seconds from ``started`` to the
    last check, seconds since the check before it, and the people agreeing at the last."""
    last_at, last_agreeing = 0.0, agreeing_before
    while True:
        dead = engine.exited()
        if dead:
            raise RuntimeError(f"engine processes exited: {dead}; logs in {engine.log_dir}")
        at = time.monotonic() - started
        agreeing, people = _agreeing(stores)
        took = time.monotonic() - started - at
        rate = (agreeing - last_agreeing) / max(at - last_at, 1e-9)
        print(f"  {at:7.1f} s  {agreeing:>9,} / {people:,} agree  ({rate:+,.0f}/s)", flush=True)
        if agreeing == people or at > timeout_s:
            return at, at - last_at, agreeing
        last_at, last_agreeing = at, agreeing
        time.sleep(max(0.0, max(_EVERY_S, 3 * took) - took))


def _merger_records(admin: TopicAdmin, prefix: str) -> tuple[int, int]:
    """(change events on the capture topics, records on the person topic)."""
    sources = [
        t for t in admin.names() if t.startswith((f"{prefix}.civil.", f"{prefix}.population."))
    ]
    return sum(admin.end_offsets(t) for t in sources), admin.end_offsets(f"{prefix}.person")


def _forget(settings: CivsyncSettings, prefix: str, databases: dict[str, str]) -> None:
    """Drop the run's databases (and their slots), topics, consumer groups and subjects."""
    for store, dbname in databases.items():
        drop(settings.stores()[store], dbname)
    admin = TopicAdmin(settings.kafka)
    topics = sorted(t for t in admin.names() if t.startswith(f"{prefix}."))
    with SchemaRegistry(settings.registry) as registry:  # by name: listing stops at 1,000
        registry.delete_subjects(f"{topic}-{part}" for topic in topics for part in ("key", "value"))
    admin.delete(topics)
    groups = [f"{prefix}-merger", *(f"{prefix}-sink-{store}" for store in databases)]
    kafka = AdminClient(settings.kafka.client_config())  # kept: its futures die with it
    for future in kafka.delete_consumer_groups(groups).values():
        with contextlib.suppress(KafkaException):  # a group that never committed is not there
            future.result(timeout=30)


def one_run(
    settings: CivsyncSettings, people: int, timeout_s: float, mergers: int
) -> dict[str, Any]:
    prefix = f"bench_initial_{uuid.uuid4().hex[:8]}"  # topics, groups, slots and databases
    databases = {store: f"civsync_{prefix}_{store}" for store in TABLES}
    run_dir, result = RUN_DIR / prefix, dict[str, Any]()
    try:
        began = time.monotonic()
        stores = {s: recreate(settings.stores()[s], db, s) for s, db in databases.items()}
        Demo(settings, run_dir, Console(), people=people).seed(stores)
        result["seed_s"] = time.monotonic() - began
        result["agreeing_before_start"] = _agreeing(stores)[0]
        engine = EngineProcesses(
            engine_config(run_dir / "civsync.toml", settings, databases, prefix),
            run_dir / "logs",
            env={"CIVSYNC_LOG_LEVEL": "WARNING"},
            extra={f"capture-{s}": ["--slot", f"{prefix}_{s}"] for s in databases},
            mergers=mergers,
        )
        started = time.monotonic()
        engine.start()
        try:
            at, result["resolution_s"], agreeing = _until_agreed(
                stores, engine, started, timeout_s, result["agreeing_before_start"]
            )
            if agreeing == people:
                result["time_to_agreement_s"], result["people_per_s"] = at, people / at
            else:
                result["did_not_converge"] = f"{agreeing:,} of {people:,} agree after {at:.0f} s"
            result["merger_in"], result["merger_out"] = _merger_records(
                TopicAdmin(settings.kafka), prefix
            )
            pids = engine.pids()  # just before stopping
            result["peak_rss_mb"] = {role: _peak_rss_mb(pid) for role, pid in pids.items()}
        finally:
            engine.stop()
    finally:
        _forget(settings, prefix, databases)
    if "did_not_converge" not in result:  # a failed run keeps its engine's logs
        shutil.rmtree(run_dir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, help="people per store (1,000,000; smoke 2,000)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, help="s per run (120 + 6 ms per person)")
    parser.add_argument("--mergers", type=int, default=1, help="merger processes (civsync run)")
    parser.add_argument("--smoke", action="store_true", help="2,000 people, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.runs = 1
    args.people = args.people or (2_000 if args.smoke else 1_000_000)
    args.timeout = args.timeout or 120 + 0.006 * args.people
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    runs = []
    for n in range(1, args.runs + 1):
        runs.append(one_run(settings, args.people, args.timeout, args.mergers))
        print(f"run {n}: {json.dumps(runs[-1])}", flush=True)
    done = [r for r in runs if "did_not_converge" not in r]
    result: dict[str, Any] = {
        "workload": {
            "people_per_store": args.people,
            "runs": args.runs,
            "timeout_s": args.timeout,
            "mergers": args.mergers,
        },
        "cpus": os.cpu_count(),
        "converged": f"{len(done)} of {len(runs)} runs",
        "seed_s": summary([r["seed_s"] for r in runs]),
    }
    if done:
        for key in ("time_to_agreement_s", "people_per_s", "merger_in", "merger_out"):
            result[key] = summary([r[key] for r in done])
        result["peak_rss_mb"] = {
            role: summary([r["peak_rss_mb"][role] for r in done]) for role in roles(args.mergers)
        }
    result["runs"] = runs
    write("initial_sync", result, smoke=args.smoke)
    if not done:
        raise SystemExit("did not converge: " + "; ".join(r["did_not_converge"] for r in runs))


if __name__ == "__main__":
    main()
