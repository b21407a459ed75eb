"""``civsync remap``: re-derive the current (2025) unit of every stored place.

For each mapped person table and each place field in it, every place value is derived again
from its recorded code and code list (``engine.places``). A value whose current unit or
quality changed is written back: only those two keys change, what was recorded never does.
The write is an ordinary change, so capture publishes it and the merger and the other store
follow. A code no list resolves is kept as recorded and marked ``unresolved`` (a steward
reviews it); a code recorded without a code list is read in every list that has it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from civsync.config import CivsyncSettings
from civsync.generator import place_value
from connectors.place_data import place_map
from connectors.postgres import Connection, connect
from engine.mapping import TableMapping
from engine.places import PLACE_FIELDS, PlaceMap, recorded_place

_BATCH = 1_000


@dataclass
class RemapReport:
    read: int = 0
    changed: Counter[str] = field(default_factory=Counter)  # by the new quality


def remap(
    settings: CivsyncSettings, *, progress: Callable[[RemapReport], None] = lambda _: None
) -> RemapReport:
    report, places = RemapReport(), place_map()
    for mapping in settings.merge.person_tables():
        columns = [c for f, c in mapping.columns.items() if f in PLACE_FIELDS]
        if columns:
            with connect(settings.stores()[mapping.store]) as conn:
                _remap_table(conn, mapping, columns, places, report, progress)
    return report


def _remap_table(  # noqa: PLR0917 - one table's whole pass
    conn: Connection,
    mapping: TableMapping,
    columns: list[str],
    places: PlaceMap,
    report: RemapReport,
    progress: Callable[[RemapReport], None],
) -> None:
    schema, _, name = mapping.table.partition(".")
    table, key = sql.Identifier(schema, name), sql.Identifier(mapping.person_column)
    read = sql.SQL("SELECT {key}::text, {cols} FROM {table}").format(
        key=key,
        cols=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        table=table,
    )
    updates: list[tuple[str, str, str]] = []  # (column, value, person)
    with conn.cursor(name="civsync_remap") as cursor:
        cursor.itersize = _BATCH
        cursor.execute(read)
        for person, *values in cursor:
            report.read += 1
            for column, value in zip(columns, values, strict=True):
                if value is None:
                    continue
                derived = _derive(str(value), places, report)
                if derived is not None:
                    updates.append((column, derived, str(person)))
            if report.read % _BATCH == 0:
                progress(report)
    conn.commit()
    for column in columns:
        statement = sql.SQL("UPDATE {table} SET {col} = %s WHERE {key} = %s").format(
            table=table, col=sql.Identifier(column), key=key
        )
        rows = [(value, person) for c, value, person in updates if c == column]
        for first in range(0, len(rows), _BATCH):
            with conn.transaction(), conn.cursor() as cursor:
                cursor.executemany(statement, rows[first : first + _BATCH])


def _derive(text: str, places: PlaceMap, report: RemapReport) -> str | None:
    """The new JSON of a stored place value, or None when nothing changed."""
    stored: dict[str, Any] = json.loads(text)
    derived = places.derive(recorded_place(stored))
    if stored.get("quality") == "resolved":
        return None  # a steward's choice stands
    fresh = json.loads(place_value(derived))
    if all(stored.get(k) == fresh[k] for k in ("current", "quality")):
        return None
    report.changed[str(derived.quality)] += 1
    return json.dumps(
        {**stored, "current": fresh["current"], "quality": fresh["quality"]},
        ensure_ascii=False,
        sort_keys=True,
    )
