"""``civsync history`` and ``civsync audit verify``: what auditors run.

The reading and checking is ``civsync.history``; this is argument parsing and presentation.
The history shows the values each change gave: personal data for the auditor's console,
never for logs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table

from civsync.config import CivsyncSettings, load_settings
from civsync.history import History, HistoryReader
from civsync.options import ConfigOption
from connectors.kafka.avro import AvroDecoder
from connectors.merge.records import MergeTopics
from connectors.registry import SchemaRegistry
from engine.errors import ConfigError

audit_app = typer.Typer(help="Tamper evidence of the people's histories.", no_args_is_help=True)
console = Console()


def _reader(settings: CivsyncSettings, registry: SchemaRegistry) -> HistoryReader:
    merge = settings.merge
    topics = MergeTopics(merge.topic_prefix)
    return HistoryReader(settings.kafka, AvroDecoder(registry), topics, merge.partitions)


def _as_of(text: str | None) -> int | None:
    """``--as-of``: an ISO 8601 time (UTC unless it says otherwise) or epoch milliseconds."""
    if text is None:
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--as-of {text!r} is not a time: give ISO 8601 (2026-12-02T05:30:00+07:00) "
            "or epoch milliseconds"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _when(ts_ms: int) -> str:
    return f"{datetime.fromtimestamp(ts_ms / 1000, UTC):%Y-%m-%d %H:%M:%S.%f}"[:-3] + "Z"


def history(
    key: Annotated[str, typer.Argument(help="The person's PIN, or key such as civil#42")],
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Show the history and state as they stood at this time"),
    ] = None,
    output: Annotated[Literal["table", "json"], typer.Option("--format")] = "table",
    config: ConfigOption = None,
) -> None:
    """A person's timeline from the topics alone (changes of both stores, conflicts,
    steward decisions, identity links) and the merged state, now or as of a time."""
    until = _as_of(as_of)
    settings = load_settings(config)
    with SchemaRegistry(settings.registry) as registry:
        found = _reader(settings, registry).history(key)
    if not found.steps:
        console.print(f"no history for {key}")
        raise typer.Exit(1)
    shown = found if until is None else found.until(until)
    if output == "json":
        print(json.dumps(_document(shown, until), ensure_ascii=False, indent=2))
        return
    table = Table("when (UTC)", "key", "version", "what")
    for step in shown.steps:
        record = step.record
        for n, line in enumerate(_lines(record)):
            first = n == 0
            when, version = _when(step.ts_ms), str(record["version"])
            table.add_row(when if first else "", step.key if first else "", version, line)
    console.print(table)
    state = shown.state()
    moment = "now" if until is None else f"as of {_when(until)}"
    if state is None:
        console.print(f"{key}: not known {moment}")
        return
    title = f"{state['person']} {moment}: version {state['version']}"
    values = Table("field", "value", title=title)
    for name, value in sorted(state["values"].items()):
        values.add_row(name, "∅" if value is None else str(value))
    console.print(values)
    if state["former_keys"]:
        console.print(f"former keys: {', '.join(state['former_keys'])}")


def _lines(record: dict[str, Any]) -> Iterator[str]:
    """What one step did, a line per change, conflict and link."""
    for event in record["events"]:
        if event["link_to"]:
            yield f"{event['origin']} {event['event_id']}: known now as {event['link_to']}"
            continue
        who = f"steward {event['actor']}" if event["origin"] == "steward" else event["origin"]
        settles = f" (settles {event['resolves']})" if event["resolves"] else ""
        fields = ", ".join(sorted(event["fields"])) or "former keys " + ", ".join(
            event["former_keys"]
        )
        yield f"{who} {event['event_id']}{settles}: {fields}"
    for conflict in record["conflicts"]:
        yield f"conflict on {conflict['field']} ({conflict['rule']}): {conflict['decision']}"
    if record["moved_to"]:
        yield f"moved to {record['moved_to']}"
    if not record["published"]:
        yield "(merged values unchanged)"


def _document(found: History, until: int | None) -> dict[str, Any]:
    return {
        "keys": list(found.keys),
        "as_of": None if until is None else _when(until),
        "state": found.state(),
        "timeline": [{"where": s.where, **s.record} for s in found.steps],
    }


@audit_app.command("verify")
def verify(
    person: Annotated[str | None, typer.Option("--person", help="Only this key's chain")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every person's chain")] = False,
    config: ConfigOption = None,
) -> None:
    """Recompute the hash chains of the people's histories and name the first broken link;
    exit 1 if one is broken."""
    if (person is None) == (not every):
        raise ConfigError("give --person KEY or --all")
    settings = load_settings(config)
    with SchemaRegistry(settings.registry) as registry:
        verdict = _reader(settings, registry).verify(person)
    checked = (
        f"{verdict.steps} step(s) of {verdict.people} person(s) in "
        f"{verdict.partitions} partition(s)"
    )
    broken = verdict.broken
    if broken is None:
        console.print(f"{checked}: every chain holds")
        return
    version = "" if broken.version < 0 else f" version {broken.version}"
    console.print(f"broken: {broken.person}{version} at {broken.where}: {broken.reason}")
    console.print(f"checked before it: {checked}")
    raise typer.Exit(1)
