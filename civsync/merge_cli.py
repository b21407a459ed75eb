"""``civsync merge``, ``civsync sink`` and ``civsync conflicts``: run the merger and the store
sinks, and let a data steward review and decide conflicts."""

from __future__ import annotations

import signal
import threading
from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from civsync.capture_cli import serve_metrics
from civsync.config import CivsyncSettings, load_settings
from civsync.options import ConfigOption, MetricsHostOption, MetricsPortOption
from connectors.merge.merger import Merger, MergerConfig
from connectors.merge.records import MergeTopics
from connectors.merge.sink import StoreSink, sink_tables
from connectors.merge.steward import ConflictHistory, UnknownConflictError, history, resolve
from connectors.merge.target import waiting_people
from connectors.postgres import connect
from connectors.registry import SchemaRegistry
from engine.errors import CivsyncError
from engine.events import Value

merge_app = typer.Typer(help="The merger: source events to merged people.", no_args_is_help=True)
sink_app = typer.Typer(help="Apply merged people to a store.", no_args_is_help=True)
conflicts_app = typer.Typer(help="Review and decide conflicts.", no_args_is_help=True)
console = Console(stderr=True)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@merge_app.command("run")
def merge_run(
    config: ConfigOption = None,
    instance: Annotated[
        str, typer.Option(help="This member's stable name in the group (its transactional id)")
    ] = "0",
    metrics_port: MetricsPortOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Merge edits of both stores into civsync.person and civsync.conflicts until stopped.
    Start more processes with other --instance names to share the partitions."""
    settings = load_settings(config)
    stop = _stop_on_signals()
    serve_metrics(metrics_host, metrics_port, "merger")
    with SchemaRegistry(settings.registry) as registry:
        Merger(MergerConfig(settings.merge, instance=instance), settings.kafka, registry).run(stop)


@sink_app.command("run")
def sink_run(
    store: Annotated[str, typer.Argument(help="civil or population")],
    config: ConfigOption = None,
    metrics_port: MetricsPortOption = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """Apply civsync.person to STORE's mapped tables until stopped."""
    settings = load_settings(config)
    stores = settings.stores()
    if store not in stores:
        raise typer.BadParameter(f"unknown store {store!r}; expected one of {sorted(stores)}")
    stop = _stop_on_signals()
    serve_metrics(metrics_host, metrics_port, f"sink-{store}")
    with SchemaRegistry(settings.registry) as registry:
        StoreSink(store, stores[store], settings.merge, settings.kafka, registry).run(stop)


@sink_app.command("waiting")
def sink_waiting(
    store: Annotated[str, typer.Argument(help="civil or population")],
    config: ConfigOption = None,
) -> None:
    """People STORE's sink has not inserted yet: their table requires a column the merged
    person has no value for. Each is inserted by the version that completes it."""
    settings = load_settings(config)
    stores = settings.stores()
    if store not in stores:
        raise typer.BadParameter(f"unknown store {store!r}; expected one of {sorted(stores)}")
    try:
        with connect(stores[store], autocommit=True) as conn:
            people = waiting_people(conn, sink_tables(settings.merge, store))
    except CivsyncError as exc:
        console.print(f"[red]{store}:[/red] {exc}")
        raise typer.Exit(1) from exc
    table = Table("table", "person", "version", "missing", "since")
    for person in people:
        table.add_row(
            person.table,
            person.person,
            str(person.version),
            ", ".join(person.missing),
            f"{person.since:%Y-%m-%d %H:%M:%S %Z}",
        )
    console.print(table)
    by_column = Counter((person.table, column) for person in people for column in person.missing)
    summary = ", ".join(f"{t}.{c}: {n}" for (t, c), n in sorted(by_column.items()))
    console.print(f"{len(people)} waiting person(s){' — missing ' + summary if summary else ''}")


def _history(settings: CivsyncSettings) -> dict[str, ConflictHistory]:
    with SchemaRegistry(settings.registry) as registry:
        topics = MergeTopics(settings.merge.topic_prefix)
        return history(settings.kafka_login("steward"), registry, topics)


def _shown(value: Value) -> str:
    """A value for the console; personal data is the steward's to see, never the logs'."""
    return "∅" if value is None else str(value)


@conflicts_app.command("list")
def conflicts_list(
    config: ConfigOption = None,
    show_all: Annotated[bool, typer.Option("--all", help="Closed conflicts too")] = False,
) -> None:
    """Conflicts waiting for a steward (--all: every one), counted by field and rule."""
    conflicts = _history(load_settings(config))
    shown = [c for c in conflicts.values() if show_all or c.pending]
    table = Table("conflict", "field", "rule", "decision", "standing", "contested")
    for conflict in shown:
        latest = conflict.latest
        table.add_row(
            latest["conflict_id"],
            latest["field"],
            latest["rule"],
            latest["decision"],
            f"{_shown(latest['standing']['value'])} ({latest['standing']['origin']})",
            f"{_shown(latest['contested']['value'])} ({latest['contested']['origin']})",
        )
    console.print(table)
    by_kind = Counter((c.latest["field"], c.latest["rule"], c.latest["decision"]) for c in shown)
    summary = ", ".join(f"{f}/{r}/{d}: {n}" for (f, r, d), n in sorted(by_kind.items()))
    console.print(f"{len(shown)} conflict(s){' — ' + summary if summary else ''}")


@conflicts_app.command("show")
def conflicts_show(
    conflict_id: Annotated[str, typer.Argument(help="The conflict's id")],
    config: ConfigOption = None,
) -> None:
    """Every record of one conflict: both values, their provenance, the rule, the outcome."""
    conflict = _find(_history(load_settings(config)), conflict_id)
    table = Table("decision", "standing", "contested", "outcome", "actor")
    for record in conflict.records:
        table.add_row(
            record["decision"],
            _edit(record["standing"]),
            _edit(record["contested"]),
            "-" if record["outcome"] is None else _edit(record["outcome"]),
            record["actor"] or "-",
        )
    latest = conflict.latest
    console.print(f"{latest['person']} · {latest['field']} · rule {latest['rule']}")
    console.print(table)


@conflicts_app.command("resolve")
def conflicts_resolve(
    conflict_id: Annotated[str, typer.Argument(help="The conflict's id")],
    actor: Annotated[str, typer.Option("--by", help="Who decides (recorded in the history)")],
    take: Annotated[
        str | None, typer.Option(help="Keep one side's value: standing or contested")
    ] = None,
    value: Annotated[str | None, typer.Option(help="Or set this value instead")] = None,
    config: ConfigOption = None,
) -> None:
    """Decide a pending conflict; the value flows to civsync.person and both stores."""
    if (take is None) == (value is None):
        raise typer.BadParameter("give exactly one of --take standing|contested or --value")
    if take not in (None, "standing", "contested"):
        raise typer.BadParameter("--take is standing or contested")
    settings = load_settings(config)
    conflict = _find(_history(settings), conflict_id)
    decided: Value = value if take is None else conflict.latest[take]["value"]
    try:
        with SchemaRegistry(settings.registry) as registry:
            edit = resolve(
                settings.kafka_login("steward"),
                registry,
                MergeTopics(settings.merge.topic_prefix),
                conflict,
                value=decided,
                actor=actor,
            )
    except UnknownConflictError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"decision {edit.event_id} sent; the merger applies it to {edit.person}")


def _find(conflicts: dict[str, ConflictHistory], conflict_id: str) -> ConflictHistory:
    if conflict_id not in conflicts:
        console.print(f"[red]no conflict {conflict_id}[/red]")
        raise typer.Exit(1)
    return conflicts[conflict_id]


def _edit(edit: dict[str, object]) -> str:
    hlc = edit["hlc"]
    assert isinstance(hlc, dict)  # noqa: S101 - the Avro shape
    return f"{_shown(edit['value'])} ({edit['origin']}, {edit['event_id']}, t={hlc['wall_ms']})"  # type: ignore[arg-type]
