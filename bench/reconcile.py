"""Reconcile benchmark: `civsync reconcile` over N people per store; rows/s and peak RSS.

Two person tables of N rows each (the profile's columns; 1 % of people differ on one field,
0.1 % exist on one side only) are filled with SQL, then `civsync reconcile` runs as its own
process against them. Rows/s counts the rows read from both stores. Each figure is the median
of --runs runs, with min and max; results go to bench/results/reconcile.json. Run from the
repository root: `python -m bench.reconcile` (1,000,000 people) or `--smoke`.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from psycopg import sql

from bench.report import summary, write
from civsync.config import load_settings
from civsync.services import LocalServices
from connectors.postgres import Connection, connect

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("full_name", "birth_date", "sex", "ethnicity", "nationality", "permanent_residence")
FILL = (
    "INSERT INTO {t} (pin, full_name, birth_date, sex, ethnicity, nationality, permanent_residence)"
    " SELECT lpad(g::text, 12, '0'),"
    " CASE WHEN %(differs)s AND g %% 100 = 0 THEN 'Nguyen Van ' ELSE 'Nguyễn Văn ' END || g,"
    " (date '1950-01-01' + (g %% 20000)::int)::text,"
    " CASE WHEN g %% 2 = 0 THEN 'male' ELSE 'female' END,"
    " 'Kinh', 'Việt Nam', jsonb_build_object('text', 'Số ' || g || ' Hàng Bạc', 'code', '00070')"
    " FROM generate_series(%(first)s::bigint, %(last)s::bigint) g"
    " WHERE NOT (%(differs)s AND g %% 1000 = 7)"
)


def _table(conn: Connection, name: str, rows: int, *, differs: bool) -> None:
    conn.execute(
        sql.SQL(
            "CREATE TABLE {} (pin text PRIMARY KEY, full_name text, birth_date text, sex text,"
            " ethnicity text, nationality text, permanent_residence jsonb)"
        ).format(sql.Identifier(name))
    )
    statement = sql.SQL(FILL).format(t=sql.Identifier(name))
    for first in range(1, rows + 1, 100_000):
        last = min(first + 99_999, rows)
        conn.execute(statement, {"first": first, "last": last, "differs": differs})


def _config(path: Path, name: str) -> Path:
    columns = "{ " + ", ".join(f'{c} = "{c}"' for c in COLUMNS) + " }"
    lines = ["[merge]"]
    for store in ("civil", "population"):
        lines += [
            "[[merge.tables]]",
            f'store = "{store}"',
            f'table = "public.{name}"',
            'person_column = "pin"',
            f"columns = {columns}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def one_run(people: int) -> tuple[float, float, int]:
    """(rows/s, peak RSS in MB, mismatches) of one reconcile over fresh tables."""
    settings = load_settings()
    name = f"bench_reconcile_{uuid.uuid4().hex[:8]}"
    stores = {"civil": settings.civil, "population": settings.population}
    try:
        for store, differs in (("civil", False), ("population", True)):
            with connect(stores[store], autocommit=True) as conn:
                _table(conn, name, people, differs=differs)
        with tempfile.TemporaryDirectory() as tmp:
            config = _config(Path(tmp) / "civsync.toml", name)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            started = time.monotonic()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "civsync.cli",
                    "reconcile",
                    "--out",
                    tmp,
                    "--config",
                    str(config),
                ],
                check=True,
                capture_output=True,
            )
            seconds = time.monotonic() - started
            peak_kb = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
            with (Path(tmp) / "mismatches.csv").open(encoding="utf-8") as mismatches:
                found = sum(1 for _ in mismatches) - 1
    finally:
        for server in stores.values():
            with connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    rows = 2 * people - people // 1000  # population lacks one person in a thousand
    return rows / seconds, peak_kb / 1024, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000, help="people per store")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="10,000 people, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.people, args.runs = 10_000, 1
    LocalServices(ROOT / ".run", load_settings()).up()
    rates, peaks = [], []
    for run in range(1, args.runs + 1):
        rate, peak, found = one_run(args.people)
        rates.append(rate)
        peaks.append(peak)
        print(
            f"run {run}: {rate:,.0f} rows/s, peak RSS {peak:.0f} MB, {found:,} mismatches",
            flush=True,
        )
    result = {
        "workload": {"people_per_store": args.people, "runs": args.runs, "fields": len(COLUMNS)},
        "reconcile_rows_per_s": summary(rates),
        "peak_rss_mb": summary(peaks),
        "cpus": os.cpu_count(),
    }
    write("reconcile", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
