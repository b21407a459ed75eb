"""End-to-end benchmark: a change committed in one store until it is visible in the other.

The whole pipeline runs as real processes on the local services: capture of both stores,
the merger and both sinks. Both directions at once: civil-status renames people (a
field it owns, applied to the population store) while the population store moves them (a
field it owns, applied to civil-status). Times come from triggers in both stores that log each
write with clock_timestamp() (one machine, one clock), so nothing is polled.

- load: N people created in each store at once, sustained changes/s until both agree;
- burst: every person changed once in each store as fast as possible, sustained changes/s;
- latency: changes offered at fixed rates (both stores together) for D seconds, p50/p99.

Each figure is the median of --runs runs, with min and max; results go to
bench/results/e2e.json. Run from the repository root: `python -m bench.e2e` (full) or
`python -m bench.e2e --smoke` (CI-sized).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from psycopg import sql

from bench.report import summary, write
from civsync.config import CivsyncSettings, load_settings
from civsync.services import LocalServices
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import Connection, connect
from tests.integration.merge_support import Pipeline, pipeline, wait_for

ROOT = Path(__file__).resolve().parents[1]
_TICK_S = 0.02


def _sql(statement: str, table: str, column: str) -> sql.Composed:
    """``statement`` with ``{t}`` and ``{c}`` as quoted table and column identifiers."""
    return sql.SQL(statement).format(t=sql.Identifier(table), c=sql.Identifier(column))


def _pins(first: int, count: int) -> list[str]:
    return [f"001200{n:06d}" for n in range(first, first + count)]


def _load(run: Pipeline, people: int) -> None:
    """Create every person in both stores, 1,000 per transaction, both stores at once."""

    def fill(conn: Connection, table: str, column: str, value: str) -> None:
        for first in range(0, people, 1000):
            pins = _pins(first, min(1000, people - first))
            conn.execute(
                _sql(
                    "INSERT INTO {t} (pin, {c}) SELECT p, %s || p FROM unnest(%s::text[]) p"
                    " ON CONFLICT (pin) DO UPDATE SET {c} = excluded.{c}",
                    table,
                    column,
                ),
                (f"load-{value}", pins),
            )

    threads = [
        threading.Thread(
            target=fill, args=(run.civil, run.civil_table, "full_name", "Nguyễn Văn ")
        ),
        threading.Thread(
            target=fill, args=(run.population, run.population_table, "permanent_residence", "Số ")
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class RateWriter(threading.Thread):
    """Changes ``rate`` people per second in one store for ``seconds`` (one statement per
    20 ms tick), each to a value no one wrote before."""

    def __init__(  # noqa: PLR0917 - one writer's whole description
        self,
        conn: Connection,
        table: str,
        column: str,
        people: int,
        rate: float,
        seconds: float,
        tag: str,
    ) -> None:
        super().__init__(daemon=True)
        self.conn, self.table, self.column = conn, table, column
        self.people, self.rate, self.seconds, self.tag = people, rate, seconds, tag
        self.written = 0

    def run(self) -> None:
        per_tick = max(1, round(self.rate * _TICK_S))
        ticks = int(self.seconds / _TICK_S)
        start, cursor = time.monotonic(), 0
        for tick in range(ticks):
            pins = _pins(cursor % self.people, min(per_tick, self.people - cursor % self.people))
            cursor += len(pins)
            self.conn.execute(
                _sql(
                    "UPDATE {t} AS p SET {c} = u.v FROM"
                    " unnest(%s::text[], %s::text[]) AS u(pin, v) WHERE p.pin = u.pin",
                    self.table,
                    self.column,
                ),
                (pins, [f"{self.tag}-{tick}-{pin}" for pin in pins]),
            )
            self.written += len(pins)
            delay = start + (tick + 1) * _TICK_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def _writes(
    conn: Connection, table: str, column: str, tag: str, *, by_civsync: bool
) -> dict[str, datetime]:
    """When each value tagged ``tag`` was first written to ``table`` (by users or by civsync)."""
    rows = conn.execute(
        _sql(
            "SELECT {c}, min(at) FROM {t} WHERE {c} LIKE %s AND by_civsync = %s GROUP BY {c}",
            f"{table}_writes",
            column,
        ),
        (f"{tag}-%", by_civsync),
    )
    return {str(value): cast(datetime, at) for value, at in rows}


def _directions(run: Pipeline) -> Iterator[tuple[Connection, str, Connection, str, str]]:
    """(source conn, source table, target conn, target table, column) for both directions."""
    yield run.civil, run.civil_table, run.population, run.population_table, "full_name"
    yield run.population, run.population_table, run.civil, run.civil_table, "permanent_residence"


def _arrivals(run: Pipeline, tag: str) -> tuple[list[float], int, float]:
    """Latencies (ms) of every change tagged ``tag``, how many have not arrived, and the
    span (s) from the first user write to the last arrival."""
    latencies, missing, first, last = [], 0, None, None
    for source, source_table, target, target_table, column in _directions(run):
        sent = _writes(source, source_table, column, tag, by_civsync=False)
        seen = _writes(target, target_table, column, tag, by_civsync=True)
        for value, at in sent.items():
            first = at if first is None else min(first, at)
            if value not in seen:
                missing += 1
                continue
            latencies.append((seen[value] - at).total_seconds() * 1000)
            last = seen[value] if last is None else max(last, seen[value])
    span = (last - first).total_seconds() if first and last else float("nan")
    return latencies, missing, span


def _offer(run: Pipeline, people: int, rate: float, seconds: float, tag: str) -> int:
    """Offer ``rate`` changes/s, half in each store, for ``seconds``; changes written."""
    writers = [
        RateWriter(conn, table, column, people, rate / 2, seconds, tag)
        for conn, table, _, _, column in _directions(run)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    return sum(w.written for w in writers)


def _settled(run: Pipeline, tag: str, expected: int, timeout_s: float) -> tuple[list[float], float]:
    def arrived() -> tuple[list[float], float] | None:
        run.check_alive()
        latencies, missing, span = _arrivals(run, tag)
        return (latencies, span) if missing == 0 and len(latencies) == expected else None

    found = wait_for(
        arrived, f"all {expected} changes tagged {tag} arrive", timeout_s=timeout_s, every=1.0
    )
    assert found is not None  # noqa: S101 - wait_for returns only a truthy result
    return found


def _percentile(values: list[float], q_: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q_ * len(ordered)))]


def one_run(
    settings: CivsyncSettings, people: int, rates: list[float], seconds: float
) -> dict[str, Any]:
    name = f"bench_e2e_{uuid.uuid4().hex[:8]}"
    result: dict[str, Any] = {}
    with (
        connect(settings.civil, autocommit=True) as civil,
        connect(settings.population, autocommit=True) as population,
        tempfile.TemporaryDirectory() as tmp,
        pipeline(civil, population, Path(tmp), name) as run,
    ):
        _load(run, people)
        _, span = _settled(run, "load", 2 * people, timeout_s=900)
        result["load_changes_per_s"] = 2 * people / span
        # burst: every person changed once in each store, as fast as the stores take it
        burst_rate = 2 * people / _TICK_S  # all in one tick per store
        _offer(run, people, burst_rate, _TICK_S, "burst")
        _, span = _settled(run, "burst", 2 * people, timeout_s=600)
        result["burst_changes_per_s"] = 2 * people / span
        for rate in rates:
            tag = f"rate{int(rate)}"
            offered = _offer(run, people, rate, seconds, tag)
            latencies, _ = _settled(run, tag, offered, timeout_s=600)
            result[f"latency_ms_at_{int(rate)}"] = {
                "p50": _percentile(latencies, 0.50),
                "p99": _percentile(latencies, 0.99),
                "max": max(latencies),
                "changes": offered,
            }
    admin = TopicAdmin(settings.kafka)  # leftover topics would load the broker of later runs
    admin.delete([topic for topic in admin.names() if topic.startswith(f"{name}.")])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, help="people per store (20,000; smoke 500)")
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--seconds", type=float, default=20.0, help="per offered rate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds, args.runs = [200], 3.0, 1
    args.people = args.people or (500 if args.smoke else 20_000)
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    runs = []
    for n in range(1, args.runs + 1):
        runs.append(one_run(settings, args.people, args.rates, args.seconds))
        print(f"run {n}: {json.dumps(runs[-1])}", flush=True)
    result: dict[str, Any] = {
        "workload": {
            "people_per_store": args.people,
            "offered_rates": args.rates,
            "seconds_per_rate": args.seconds,
            "runs": args.runs,
        },
        "cpus": os.cpu_count(),
    }
    for key in ("load_changes_per_s", "burst_changes_per_s"):
        result[key] = summary([r[key] for r in runs])
    for rate in args.rates:
        key = f"latency_ms_at_{int(rate)}"
        result[key] = {p: summary([r[key][p] for r in runs]) for p in ("p50", "p99", "max")}
    write("e2e", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
