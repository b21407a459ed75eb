"""``civsync capture``: run the capture of one store, and report slot positions and lag."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TextColumn
from rich.table import Table

from civsync.config import CivsyncSettings, load_settings
from civsync.options import ConfigOption, MetricsHostOption, MetricsPortOption
from connectors.capture import metrics as capture_metrics
from connectors.capture import snapshot as snapshots
from connectors.capture.handoff import PublisherProcess, PublisherSpec
from connectors.capture.slot import ReplicationSlot
from connectors.capture.stream import CaptureConfig, CaptureStream, captured_tables, forget
from connectors.postgres import Connection, connect
from connectors.registry import SchemaRegistry
from connectors.settings import StoreSettings
from engine.events import format_lsn

app = typer.Typer(help="Log-based capture of the stores into Kafka.", no_args_is_help=True)
console = Console(stderr=True)


SlotOption = Annotated[
    str | None, typer.Option(help="Slot name (default: [capture] slot_prefix, _, the store)")
]


def serve_metrics(host: str, port: int, part: str) -> None:
    """Serve ``part``'s /metrics and /healthz on ``host``:``port``, unless ``port`` is 0."""
    if port:
        capture_metrics.serve(port, part, host=host)


def slot_name(settings: CivsyncSettings, store: str) -> str:
    """The slot of ``store``: ``[capture] slot_prefix``, then the store's name."""
    return f"{settings.capture.slot_prefix}_{store}"


@app.command("run")
def run(
    store: Annotated[str, typer.Argument(help="civil or population")],
    *,
    config: ConfigOption = None,
    slot: Annotated[
        str | None, typer.Option(help="Slot name (default <slot_prefix>_<store>)")
    ] = None,
    table: Annotated[
        list[str] | None, typer.Option(help="schema.table to capture (repeat)")
    ] = None,
    partitions: Annotated[
        int | None,
        typer.Option(min=1, help="Partitions of new topics (default: [merge] partitions)"),
    ] = None,
    snapshot_chunk: Annotated[int, typer.Option(min=1, help="Rows per snapshot chunk")] = 5_000,
    metrics_port: MetricsPortOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Stream committed changes of STORE into civsync.<store>.<table> until SIGTERM/SIGINT."""
    settings = load_settings(config)
    store_settings = _store(settings, store)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    serve_metrics(metrics_host, metrics_port, f"capture-{store}")
    with SchemaRegistry(settings.registry) as registry:
        spec = PublisherSpec(
            settings.kafka,
            settings.registry,
            partitions=partitions or settings.merge.partitions,
            topic_prefix=settings.merge.topic_prefix,
            capture=settings.routed_capture(),
        )
        separate = settings.capture.separate_publisher
        publisher = PublisherProcess(spec) if separate else spec.build(registry)
        capture = CaptureConfig(
            store=store,
            slot=slot or slot_name(settings, store),
            tables=tuple(table or ()),
            snapshot_chunk=snapshot_chunk,
        )
        try:
            CaptureStream(capture, store_settings, publisher).run(stop)
        finally:
            if isinstance(publisher, PublisherProcess):
                publisher.close()


def snapshot(
    store: Annotated[str, typer.Argument(help="civil or population")],
    tables: Annotated[list[str] | None, typer.Argument(help="schema.table (default: all)")] = None,
    config: ConfigOption = None,
    slot: Annotated[
        str | None, typer.Option(help="Slot name (default <slot_prefix>_<store>)")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Show progress until every table is read")] = True,
) -> None:
    """Queue an incremental snapshot of STORE; the running capture reads it in key chunks."""
    settings = load_settings(config)
    with connect(_store(settings, store), autocommit=True) as conn:
        conn.execute(snapshots.JOBS_DDL)
        jobs = snapshots.request(
            conn, slot or slot_name(settings, store), captured_tables(conn, tuple(tables or ()))
        )
        console.print(f"queued {len(jobs)} table(s) for `civsync capture run {store}` to read")
        if wait:
            _follow(conn, jobs)


def _follow(conn: Connection, jobs: list[int]) -> None:
    with Progress(
        *Progress.get_default_columns(), TextColumn("{task.fields[rows]} rows"), console=console
    ) as bar:
        task = bar.add_task("snapshot", total=len(jobs), rows=0)
        while True:
            states = snapshots.progress(conn, jobs)
            finished = [s for s in states if s[3] != "pending"]
            bar.update(task, completed=len(finished), rows=f"{sum(s[2] for s in states):,}")
            if len(finished) == len(jobs):
                break
            time.sleep(0.5)
    for job_id, table, rows, state in snapshots.progress(conn, jobs):
        console.print(f"{table}: {rows:,} rows, {state} (job {job_id})")


def _store(settings: CivsyncSettings, store: str) -> StoreSettings:
    stores = settings.stores()
    if store not in stores:
        raise typer.BadParameter(f"unknown store {store!r}; expected one of {sorted(stores)}")
    return stores[store]


@app.command("reset")
def reset(
    store: Annotated[str, typer.Argument(help="civil or population")],
    config: ConfigOption = None,
    slot: SlotOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask")] = False,
) -> None:
    """Drop STORE's slot, its publication and civsync's records of them: the remedy for a lost
    slot. The next `capture run` creates a new slot and re-reads every table (a snapshot);
    the merger takes the re-read rows like any others, so nothing is applied twice."""
    settings = load_settings(config)
    name = slot or slot_name(settings, store)
    if not yes:
        typer.confirm(f"drop slot {name} of {store} and snapshot every table again?", abort=True)
    with connect(_store(settings, store), autocommit=True) as conn:
        forget(conn, name)
    console.print(f"slot {name} dropped; `civsync capture run {store}` starts anew with a snapshot")


@app.command("status")
def status(config: ConfigOption = None) -> None:
    """Each store's slot: confirmed position, WAL status, lag in bytes."""
    settings = load_settings(config)
    view = Table("store", "slot", "confirmed", "wal status", "lag (bytes)", "active pid")
    for store, store_settings in settings.stores().items():
        with connect(store_settings, autocommit=True) as conn:
            state = ReplicationSlot(slot_name(settings, store)).state(conn)
        if state is None:
            view.add_row(store, slot_name(settings, store), "-", "no slot", "-", "-")
            continue
        view.add_row(
            store,
            state.name,
            format_lsn(state.confirmed_lsn),
            state.wal_status or "-",
            f"{state.lag_bytes:,}",
            str(state.active_pid or "-"),
        )
    console.print(view)
