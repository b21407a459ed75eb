"""``civsync capture``: run the capture of one store, and report slot positions and lag."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civsync.config import load_settings
from connectors.capture.publisher import ChangePublisher
from connectors.capture.slot import ReplicationSlot
from connectors.capture.stream import CaptureConfig, CaptureStream
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from engine.events import format_lsn

app = typer.Typer(help="Log-based capture of the stores into Kafka.", no_args_is_help=True)
console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="TOML config file (default: $CIVSYNC_CONFIG)")
]


def slot_name(store: str) -> str:
    return f"civsync_{store}"


@app.command("run")
def run(
    store: Annotated[str, typer.Argument(help="civil or population")],
    config: ConfigOption = None,
    slot: Annotated[str | None, typer.Option(help="Slot name (default civsync_<store>)")] = None,
    table: Annotated[
        list[str] | None, typer.Option(help="schema.table to capture (repeat)")
    ] = None,
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of new topics")] = 12,
) -> None:
    """Stream committed changes of STORE into civsync.<store>.<table> until SIGTERM/SIGINT."""
    settings = load_settings(config)
    stores = settings.stores()
    if store not in stores:
        raise typer.BadParameter(f"unknown store {store!r}; expected one of {sorted(stores)}")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with SchemaRegistry(settings.registry) as registry:
        publisher = ChangePublisher(settings.kafka, registry, partitions=partitions)
        capture = CaptureConfig(
            store=store, slot=slot or slot_name(store), tables=tuple(table or ())
        )
        CaptureStream(capture, stores[store], publisher).run(stop)


@app.command("status")
def status(config: ConfigOption = None) -> None:
    """Each store's slot: confirmed position, WAL status, lag in bytes."""
    settings = load_settings(config)
    view = Table("store", "slot", "confirmed", "wal status", "lag (bytes)", "active pid")
    for store, store_settings in settings.stores().items():
        with connect(store_settings, autocommit=True) as conn:
            state = ReplicationSlot(slot_name(store)).state(conn)
        if state is None:
            view.add_row(store, slot_name(store), "-", "no slot", "-", "-")
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
