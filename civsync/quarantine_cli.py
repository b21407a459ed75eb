"""``civsync quarantine``: review quarantined input and send it again once fixed.

The work is ``connectors.merge.retry``; this is argument parsing and presentation. ``show``
prints the input itself (it may hold personal data: it is for the operator's console, never
for logs).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civsync.config import CivsyncSettings, load_settings
from civsync.options import ConfigOption
from connectors.merge.records import MergeTopics
from connectors.merge.retry import Quarantined, quarantined, retry
from connectors.registry import SchemaRegistry

app = typer.Typer(help="Quarantined input: list, show, retry.", no_args_is_help=True)
console = Console()


def _all(settings: CivsyncSettings) -> list[Quarantined]:
    with SchemaRegistry(settings.registry) as registry:
        return quarantined(settings.kafka_login("steward"), registry)


def _when(record: Quarantined) -> str:
    return f"{datetime.fromtimestamp(record.record['ts_ms'] / 1000, UTC):%Y-%m-%d %H:%M:%S}"


@app.command("list")
def list_(
    config: ConfigOption = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason")] = None,
) -> None:
    """Quarantined input, oldest first, counted by reason."""
    found = [q for q in _all(load_settings(config)) if reason in (None, q.record["reason"])]
    table = Table("id", "reason", "stage", "store", "table", "when", "retry of")
    for item in found:
        record = item.record
        table.add_row(
            item.id,
            record["reason"],
            record["stage"],
            record["store"] or "-",
            record["table"] or "-",
            _when(item),
            record.get("retry_of") or "",
        )
    console.print(table)
    counts = Counter(q.record["reason"] for q in found)
    console.print(", ".join(f"{r}: {n}" for r, n in sorted(counts.items())) or "none")


@app.command()
def show(
    record_id: Annotated[str, typer.Argument(help="The record's id (from list)")],
    config: ConfigOption = None,
) -> None:
    """Every record with this id: reason, detail, where the input is, and the input."""
    found = [q for q in _all(load_settings(config)) if q.id == record_id]
    if not found:
        console.print(f"[red]no quarantine record {record_id}[/red]")
        raise typer.Exit(1)
    for item in found:
        console.print_json(json.dumps(dict(item.record), ensure_ascii=False, default=str))


@app.command("retry")
def retry_(
    record_id: Annotated[str | None, typer.Argument(help="The record's id (from list)")] = None,
    reason: Annotated[str | None, typer.Option(help="Every record of this reason")] = None,
    config: ConfigOption = None,
) -> None:
    """Send quarantined input again through the normal path, once its store row or the
    config is fixed. A retry that fails again makes a new record (retry of this one)."""
    if (record_id is None) == (reason is None):
        raise typer.BadParameter("give a record id or --reason, not both")
    settings = load_settings(config)
    chosen = [
        q for q in _all(settings) if q.id == record_id or (reason and q.record["reason"] == reason)
    ]
    if not chosen:
        console.print("[red]no such quarantine record[/red]")
        raise typer.Exit(1)
    merge = settings.merge
    steward = settings.kafka_login("steward")
    outcomes = retry(steward, MergeTopics(merge.topic_prefix), merge.partitions, chosen)
    for item, outcome in outcomes:
        console.print(f"{item.id} ({item.record['reason']}): {outcome}")
    if not any(outcome.startswith("sent") for _, outcome in outcomes):
        raise typer.Exit(1)
