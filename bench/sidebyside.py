"""civsync side by side with Debezium and with the hardware ceilings, in one run.

Each run, on the same services and in the bench databases ``civsync_bench_dbz``:

- capture and apply (bench/debezium.py): civsync's capture and Debezium's PostgreSQL connector
  on fresh copies of the same N-row table (snapshot rows/s, then M updates: streaming
  events/s); civsync's merger and population sink, and Debezium's JDBC sink, applying the
  N + M records each tool wrote (records/s);
- ceilings (bench/ceilings.py): COPY + INSERT ... ON CONFLICT (rows/s, new rows and updates),
  wal2json and pgoutput decoding (changes/s), Kafka produce of civsync's record size with
  Kafka's ProducerPerformance and with bare librdkafka (records/s);
- latency (bench/e2e.py's pipeline and writers): the whole engine as processes, both
  directions at once, changes offered at each rate for D seconds (half per store). A change's
  latency runs from its commit until the other store holds it or a later change of the same
  field (under overload the sink coalesces a person's changes); p50, p99, max, the rate the
  writers achieved and the rate delivered.

Every figure is the median of --runs runs with min and max, written to
bench/results/sidebyside.json with a chart, docs/benchmarks.png (``--smoke``: small sizes, one
run, both files under bench/results/ with ``-smoke``). Run from the repository root:
``python -m bench.sidebyside [--smoke] [--runs N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from psycopg import sql

from bench import ceilings, debezium, e2e
from bench.connect import HOME as CONNECT_HOME
from bench.report import RESULTS, summary, write
from civsync.config import load_settings
from civsync.services import LocalServices
from civsync.services.connect import CONNECT_VERSION, DEBEZIUM_VERSION, ConnectWorker
from connectors.kafka.admin import TopicAdmin
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from tests.integration.merge_support import Pipeline, pipeline, wait_for

ROOT = Path(__file__).resolve().parents[1]
CEILINGS = {  # key: label
    "pg_upsert_insert": "PostgreSQL upsert, new rows",
    "pg_upsert_update": "PostgreSQL upsert, updates",
    "wal2json_decode": "wal2json decoding",
    "pgoutput_decode": "pgoutput decoding",
    "java_produce": "Kafka produce (Java)",
    "librdkafka_produce": "Kafka produce (librdkafka)",
}
# (civsync figure, ceiling it is held against): the ceiling bounds what the figure can reach
AGAINST = (
    ("snapshot", "librdkafka_produce"),
    ("streaming", "wal2json_decode"),
    ("streaming", "librdkafka_produce"),
    ("apply", "pg_upsert_insert"),
    ("apply", "pg_upsert_update"),
)
TOOL_FIGURES = {"snapshot": "capture snapshot", "streaming": "capture streaming", "apply": "apply"}
TOOL_RATES = ("snapshot", "streaming", "apply", "apply_steady", "bytes")  # medians over runs
TOOL_CPU = ("streaming_cpu_us", "apply_cpu_us")  # µs per record by component, medians


def ceiling_run(rig: debezium.Rig, rows: int, records: int, size: int) -> dict[str, float]:
    """bench/ceilings.py's measurements, the produce ones with ``size``-byte records."""
    found = dict(
        zip(
            ("pg_upsert_insert", "pg_upsert_update"),
            ceilings.upsert_rates(rig.target, rows),
            strict=True,
        )
    )
    found |= zip(
        ("wal2json_decode", "pgoutput_decode"),
        ceilings.decoding_rates(rig.source, rows),
        strict=True,
    )
    topic = f"{rig.prefix}-ceilings-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(rig.settings.kafka.client_config())
    admin.create_topics([NewTopic(topic, debezium.PARTITIONS, 1)])[topic].result(timeout=30)
    try:
        found["java_produce"] = ceilings.java_produce(rig.settings.kafka, topic, records, size)
        found["librdkafka_produce"] = ceilings.python_produce(
            rig.settings.kafka, topic, records, size
        )
    finally:
        admin.delete_topics([topic])[topic].result(timeout=30)
    return found


def _latencies(run: Pipeline, tag: str) -> tuple[list[float], int, int, float]:
    """(latencies ms, changes not yet arrived, changes superseded, span s) of the changes
    tagged ``tag`` (values ``<tag>-<tick>-<pin>``), in both directions."""
    latencies: list[float] = []
    pending = superseded = 0
    first: datetime | None = None
    last: datetime | None = None
    for source, source_table, target, target_table, column in e2e._directions(run):
        sent = e2e._writes(source, source_table, column, tag, by_civsync=False)
        seen = e2e._writes(target, target_table, column, tag, by_civsync=True)
        by_field: dict[str, list[tuple[int, str, datetime]]] = {}
        for value, at in sent.items():
            _, tick, pin = value.rsplit("-", 2)
            by_field.setdefault(pin, []).append((int(tick), value, at))
            first = at if first is None else min(first, at)
        for changes in by_field.values():
            arrival: datetime | None = None  # the earliest arrival of this change or a later one
            for _, value, at in sorted(changes, reverse=True):
                if value in seen:
                    arrival = seen[value] if arrival is None else min(arrival, seen[value])
                    last = seen[value] if last is None else max(last, seen[value])
                elif arrival is not None:
                    superseded += 1
                if arrival is None:
                    pending += 1
                else:
                    latencies.append((arrival - at).total_seconds() * 1000)
    span = (last - first).total_seconds() if first and last else float("nan")
    return latencies, pending, superseded, span


def latency_run(
    rig: debezium.Rig, people: int, rates: list[float], seconds: float
) -> dict[str, dict[str, float]]:
    """End-to-end latency at each offered rate, on a pipeline of this run's own."""
    name = f"sbs_e2e_{uuid.uuid4().hex[:8]}"
    os.environ.pop("CIVSYNC_MERGE__TOPIC_PREFIX", None)  # the pipeline's config names its own
    result: dict[str, dict[str, float]] = {}
    with (
        connect(rig.source, autocommit=True) as civil,
        connect(rig.target, autocommit=True) as population,
        tempfile.TemporaryDirectory() as tmp,
    ):
        try:
            with pipeline(civil, population, Path(tmp), name) as run:
                e2e._load(run, people)
                e2e._settled(run, "load", 2 * people, timeout_s=900)
                for rate in rates:
                    tag = f"rate{int(rate)}"
                    started = time.monotonic()
                    offered = e2e._offer(run, people, rate, seconds, tag)
                    achieved = offered / (time.monotonic() - started)

                    def settled(tag: str = tag) -> tuple[list[float], int, float] | None:
                        run.check_alive()
                        found, pending, superseded, span = _latencies(run, tag)
                        return (found, superseded, span) if not pending else None

                    arrived = wait_for(
                        settled, f"changes tagged {tag} arrive", timeout_s=900, every=1.0
                    )
                    found, superseded, span = cast("tuple[list[float], int, float]", arrived)
                    result[str(int(rate))] = {
                        "p50_ms": e2e._percentile(found, 0.50),
                        "p99_ms": e2e._percentile(found, 0.99),
                        "max_ms": max(found),
                        "changes": offered,
                        "offered_per_s": achieved,
                        "delivered_per_s": offered / span,
                        "superseded": superseded,
                    }
                    print(f"latency at {rate:.0f}/s: {result[str(int(rate))]}", flush=True)
        finally:
            for conn, table in (
                (civil, run_table(name, "person")),
                (population, run_table(name, "citizen")),
            ):
                conn.execute(debezium.q("DROP TABLE IF EXISTS {t}", f"{table}_writes"))
                conn.execute(debezium.q("DROP TABLE IF EXISTS {t}", table))
                conn.execute(
                    sql.SQL("DROP FUNCTION IF EXISTS {}").format(
                        sql.Identifier(f"{table}_log_write")
                    )
                )
            _forget(
                rig,
                name,
                [f"{name}-merger", f"{name}.civsync-sink-civil", f"{name}.civsync-sink-population"],
            )
    return result


def run_table(name: str, kind: str) -> str:
    return f"{name}_{kind}"


def _forget(rig: debezium.Rig, prefix: str, groups: list[str]) -> None:
    """Delete ``groups`` and every topic and registry subject whose name starts with ``prefix``."""
    admin = AdminClient(rig.settings.kafka.client_config())
    for future in admin.delete_consumer_groups(groups).values():
        with contextlib.suppress(KafkaException):  # a group that never committed is not there
            future.result(timeout=30)
    rig.admin.delete(sorted(t for t in rig.admin.names() if t.startswith(prefix)))
    with SchemaRegistry(rig.settings.registry) as registry:
        registry.delete_subjects(s for s in registry.subjects() if s.startswith(prefix))


def chart(result: dict[str, Any], out: Path) -> None:
    """civsync against Debezium (left) and against the ceilings (right, log scale)."""
    import matplotlib  # noqa: PLC0415 - only the chart needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.3]})
    width = 0.38
    for n, (tool, colour) in enumerate((("civsync", "tab:blue"), ("debezium", "tab:orange"))):
        figures = [result[tool][key] for key in TOOL_FIGURES]
        xs = [i + (n - 0.5) * width for i in range(len(figures))]
        medians = [f["median"] for f in figures]
        errors = [
            [m - f["min"] for m, f in zip(medians, figures, strict=True)],
            [f["max"] - m for m, f in zip(medians, figures, strict=True)],
        ]
        left.bar(
            xs,
            medians,
            width,
            yerr=errors,
            capsize=3,
            color=colour,
            label=tool if tool == "civsync" else "Debezium",
        )
    left.set_xticks(
        range(len(TOOL_FIGURES)), ["snapshot\nrows/s", "streaming\nevents/s", "apply\nrecords/s"]
    )
    left.set_title("civsync vs Debezium (median, min-max)")
    left.legend()
    labels = (
        [CEILINGS[k] for k in CEILINGS]
        + [f"civsync {v}" for v in TOOL_FIGURES.values()]
        + [f"Debezium {v}" for v in TOOL_FIGURES.values()]
    )
    values = (
        [result["ceilings"][k]["median"] for k in CEILINGS]
        + [result["civsync"][k]["median"] for k in TOOL_FIGURES]
        + [result["debezium"][k]["median"] for k in TOOL_FIGURES]
    )
    colours = ["tab:grey"] * len(CEILINGS) + ["tab:blue"] * 3 + ["tab:orange"] * 3
    right.barh(range(len(values)), values, color=colours)
    right.set_yticks(range(len(values)), labels)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("per second (log scale)")
    right.set_title("against the ceilings (grey)")
    fig.suptitle(
        f"civsync {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, everything co-located"
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"chart written to {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000, help="snapshot rows, upserted rows")
    parser.add_argument("--updates", type=int, default=50_000, help="streamed, applied updates")
    parser.add_argument("--records", type=int, default=200_000, help="records produced (ceiling)")
    parser.add_argument("--people", type=int, default=10_000, help="people per store (latency)")
    parser.add_argument("--rates", type=float, nargs="+", default=[1000, 2000, 5000])
    parser.add_argument("--seconds", type=float, default=15.0, help="per offered rate")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.updates, args.records, args.people, args.seconds = (
            2_000,
            1_000,
            20_000,
            1_000,
            3.0,
        )
        args.runs = 1
    args.updates = min(args.updates, args.rows)
    load_before = os.getloadavg()
    os.environ["CIVSYNC_KAFKA__COMPRESSION"] = debezium.COMPRESSION  # every civsync process
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    prefix = f"sbs-{time.strftime('%Y%m%d%H%M%S')}"
    source, target = debezium.bench_store(settings.civil), debezium.bench_store(settings.population)
    # every civsync process of this run (capture, merger, sinks) works in the bench databases
    os.environ["CIVSYNC_CIVIL__DBNAME"] = source.dbname
    os.environ["CIVSYNC_POPULATION__DBNAME"] = target.dbname
    runs: list[dict[str, Any]] = []
    with ConnectWorker(settings.kafka, prefix, home=CONNECT_HOME) as worker:
        rig = debezium.Rig(settings, source, target, TopicAdmin(settings.kafka), worker, prefix)
        try:
            if not args.smoke:  # JIT-compile the worker's hot paths, as in a long-lived worker
                debezium.one_run(rig, 5_000, 5_000)
            for n in range(1, args.runs + 1):
                found = debezium.one_run(rig, args.rows, args.updates)
                size = round(found["civsync"]["bytes"])
                found["ceilings"] = ceiling_run(rig, args.rows, args.records, size)
                found["latency"] = latency_run(rig, args.people, args.rates, args.seconds)
                runs.append(found)
                print(f"run {n}: {found}", flush=True)
        finally:
            rig.cleanup()

    def figure(part: str, key: str) -> dict[str, float]:
        return summary([r[part][key] for r in runs])

    def cpu(tool: str, key: str) -> dict[str, float]:
        """Median µs of CPU per record by component (bench.cpu), over the runs."""
        names = sorted({name for r in runs for name in r[tool][key]})
        return {n: statistics.median(r[tool][key].get(n, 0) for r in runs) for n in names}

    result: dict[str, Any] = {
        "workload": {
            "rows": args.rows,
            "updates": args.updates,
            "records": args.records,
            "people_per_store": args.people,
            "rates": args.rates,
            "seconds_per_rate": args.seconds,
            "runs": args.runs,
            "row": "person-like: pin text key, 13 text columns, version bigint, timestamptz",
            "partitions": debezium.PARTITIONS,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(
                os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1
            ),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "versions": {"debezium": DEBEZIUM_VERSION, "kafka_connect": CONNECT_VERSION},
        **{
            tool: {k: figure(tool, k) for k in TOOL_RATES} | {k: cpu(tool, k) for k in TOOL_CPU}
            for tool in ("civsync", "debezium")
        },
        "ceilings": {k: figure("ceilings", k) for k in CEILINGS},
        "latency": {
            rate: {
                k: summary([r["latency"][rate][k] for r in runs]) for k in runs[0]["latency"][rate]
            }
            for rate in runs[0]["latency"]
        },
    }
    ratios: dict[str, float] = {}
    for key, label in TOOL_FIGURES.items():
        ratios[f"civsync/Debezium {label}"] = (
            result["civsync"][key]["median"] / result["debezium"][key]["median"]
        )
    for key, ceiling in AGAINST:
        ratios[f"civsync {TOOL_FIGURES[key]} / {CEILINGS[ceiling]}"] = (
            result["civsync"][key]["median"] / result["ceilings"][ceiling]["median"]
        )
    result["ratios"] = ratios
    for label, ratio in ratios.items():
        print(f"{label}: {ratio:.2f}")
    write("sidebyside", result, smoke=args.smoke)
    chart(
        result, RESULTS / "sidebyside-smoke.png" if args.smoke else ROOT / "docs" / "benchmarks.png"
    )


if __name__ == "__main__":
    main()
