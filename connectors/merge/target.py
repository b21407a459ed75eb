"""A store table the sink writes, and the set-based statements that apply a batch to it.

``Target.apply`` writes a batch of merged people (``civsync.person`` records, the newest
version of each) to one mapped table, inside the sink's open transaction:

1. the batch is copied (COPY) into a temporary staging table, people in key order;
2. ``_civsync.applied`` advances only for people whose version is newer than the one
   already applied, so an older record never overwrites a newer one (replays, rebalances,
   two sinks during a rebalance); those people are *fresh*;
3. the rows of the fresh people are locked in key order, in one statement, so the sink takes
   its row locks in one order, whoever else writes the table;
4. their mapped columns are updated, or their row inserted; a row that already holds the
   merged values is not written at all.

A record's ``former_keys`` rename the rows still under them first (a re-issued PIN; a
birth's provisional key ``civil#<id>`` gets the PIN the population store assigned). A
provisional person is written to its own store's row by local id, and to the tables that
hold provisional people.

A row is never inserted without a column its table requires (NOT NULL, no default): that
person waits in ``_civsync.waiting`` (table, person, version, the missing columns, since
when) until a newer merged version has them; a wait is not a rejection.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from connectors.postgres import Connection, classify
from engine.errors import FatalError
from engine.mapping import TableMapping, is_provisional, local_id_of

APPLIED_DDL = """
CREATE SCHEMA IF NOT EXISTS _civsync;
CREATE TABLE IF NOT EXISTS _civsync.applied (
    target text NOT NULL,
    person text NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (target, person)
);
CREATE TABLE IF NOT EXISTS _civsync.waiting (
    target text NOT NULL,
    person text NOT NULL,
    version bigint NOT NULL,
    missing text[] NOT NULL,
    since timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, person)
)"""


@dataclass(frozen=True)
class Target:
    """One mapped table, its staging table, and the statements that apply a batch to it."""

    mapping: TableMapping
    required: frozenset[str]  # mapped columns the table requires: NOT NULL, no default
    stage: str
    copy: sql.Composed
    mark_fresh: sql.Composed
    lock: sql.Composed  # the fresh people's rows, in key order
    lock_local: sql.Composed | None
    update: sql.Composed
    update_local: sql.Composed | None  # a provisional person of this store, by local id
    insert: sql.Composed
    wait: sql.Composed  # fresh people missing a required column wait; the others stop waiting
    rename: sql.Composed
    rename_local: sql.Composed | None

    @classmethod
    def build(cls, conn: Connection, mapping: TableMapping, index: int) -> Target:
        types = _column_types(conn, mapping.table)
        local = mapping.local_key
        wanted = {mapping.person_column, *mapping.columns.values(), *([local] if local else [])}
        missing = sorted(wanted - set(types))
        if missing:
            raise FatalError(f"table {mapping.table} has no column(s) {missing}")
        stage = f"civsync_stage_{index}"
        columns = list(mapping.columns.values())
        stage_columns = [
            sql.SQL("{} {}, {} boolean").format(
                sql.Identifier(c), sql.SQL(types[c]), sql.Identifier(f"{c}__set")
            )
            for c in columns
        ]
        conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (person text PRIMARY KEY, version bigint,"
                " key text, local_id text, former_pins text[], former_local text[],"
                " missing text[] NOT NULL DEFAULT '{{}}', fresh boolean NOT NULL DEFAULT false, {})"
                " ON COMMIT DELETE ROWS"
            ).format(sql.Identifier(stage), sql.SQL(", ").join(stage_columns))
        )
        target, key = _qualified(mapping.table), sql.Identifier(mapping.person_column)
        person = sql.SQL("s.key::{}").format(sql.SQL(types[mapping.person_column]))
        by_local = (
            None
            if local is None
            else (sql.Identifier(local), sql.SQL("s.local_id::{}").format(sql.SQL(types[local])))
        )
        merged = [
            sql.SQL("CASE WHEN s.{set} THEN s.{c} ELSE t.{c} END").format(
                c=sql.Identifier(c), set=sql.Identifier(f"{c}__set")
            )
            for c in columns
        ]
        current = sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in columns)
        copy_columns = [sql.Identifier(x) for c in columns for x in (c, f"{c}__set")]

        def lock(match: sql.Composable, value: sql.Composable) -> sql.Composed:
            """Lock the rows ``update`` will write (fresh people whose ``match`` column =
            ``value`` and whose row differs), in the order of that column (the lock is taken
            after the sort); a row that already holds the merged values is not locked."""
            return sql.SQL(
                "SELECT 1 FROM {target} t JOIN {stage} s ON t.{match} = {value} WHERE s.fresh"
                " AND ({current}) IS DISTINCT FROM ({merged}) ORDER BY t.{match} FOR UPDATE OF t"
            ).format(
                target=target,
                stage=sql.Identifier(stage),
                match=match,
                value=value,
                current=current,
                merged=sql.SQL(", ").join(merged),
            )

        def update(match: sql.Composable, value: sql.Composable) -> sql.Composed:
            """Write the merged columns of the fresh people whose ``match`` column = ``value``."""
            return sql.SQL(
                "UPDATE {target} t SET ({columns}) = ROW({merged}) FROM {stage} s WHERE s.fresh"
                " AND t.{match} = {value} AND ({current}) IS DISTINCT FROM ({merged})"
            ).format(
                target=target,
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                merged=sql.SQL(", ").join(merged),
                stage=sql.Identifier(stage),
                match=match,
                value=value,
                current=current,
            )

        name = sql.Literal(mapping.table)
        return cls(
            mapping=mapping,
            # the person column is always set; the others the merged person may lack
            required=frozenset(
                _required_columns(conn, mapping.table) & set(columns) - {mapping.person_column}
            ),
            stage=stage,
            copy=sql.SQL(
                "COPY {} (person, version, key, local_id, former_pins, former_local, missing, {})"
                " FROM STDIN"
            ).format(sql.Identifier(stage), sql.SQL(", ").join(copy_columns)),
            mark_fresh=sql.SQL(
                "WITH fresh AS ("
                " INSERT INTO _civsync.applied AS a (target, person, version)"
                " SELECT {name}, person, version FROM {stage}"
                " ON CONFLICT (target, person) DO UPDATE SET version = excluded.version"
                " WHERE a.version < excluded.version RETURNING person)"
                " UPDATE {stage} s SET fresh = true FROM fresh WHERE s.person = fresh.person"
            ).format(name=name, stage=sql.Identifier(stage)),
            lock=lock(key, person),
            lock_local=None if by_local is None else lock(*by_local),
            update=update(key, person),
            update_local=None if by_local is None else update(*by_local),
            insert=sql.SQL(
                "INSERT INTO {target} ({key}, {columns}) SELECT {person}, {values} FROM {stage} s"
                " WHERE s.fresh AND s.key IS NOT NULL AND cardinality(s.missing) = 0"
                " AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = {person})"
                " ON CONFLICT DO NOTHING"
            ).format(
                target=target,
                key=key,
                columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                person=person,
                values=sql.SQL(", ").join(
                    sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns
                ),
                stage=sql.Identifier(stage),
            ),
            # after the insert: every CTE reads the same snapshot, so ``before`` is who
            # waited before this statement, and the result is who starts waiting now
            wait=sql.SQL(
                "WITH staged AS (SELECT s.person, s.version, s.missing,"
                " s.key IS NOT NULL AND cardinality(s.missing) > 0"
                " AND NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{key} = {person}) AS waits"
                " FROM {stage} s WHERE s.fresh),"
                " before AS (SELECT w.person FROM _civsync.waiting w JOIN staged USING (person)"
                " WHERE w.target = {name}),"
                " done AS (DELETE FROM _civsync.waiting w USING staged"
                " WHERE w.target = {name} AND w.person = staged.person AND NOT staged.waits),"
                " waiting AS (INSERT INTO _civsync.waiting AS w (target, person, version, missing)"
                " SELECT {name}, person, version, missing FROM staged WHERE waits"
                " ON CONFLICT (target, person) DO UPDATE"
                " SET version = excluded.version, missing = excluded.missing"
                ' RETURNING w.target AS "table", w.person, w.version, w.missing, w.since)'
                " SELECT * FROM waiting"
                " WHERE NOT EXISTS (SELECT 1 FROM before WHERE before.person = waiting.person)"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                name=name,
            ),
            rename=sql.SQL(
                "UPDATE {target} t SET {key} = {person} FROM {stage} s,"
                " unnest(s.former_pins) AS f(old) WHERE s.key IS NOT NULL"
                " AND t.{key} = f.old::{type}"
                " AND NOT EXISTS (SELECT 1 FROM {target} x WHERE x.{key} = {person})"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                type=sql.SQL(types[mapping.person_column]),
            ),
            rename_local=None
            if local is None
            else sql.SQL(
                "UPDATE {target} t SET {key} = {person} FROM {stage} s,"
                " unnest(s.former_local) AS f(old) WHERE s.key IS NOT NULL"
                " AND t.{local} = f.old::{type} AND t.{key} IS NULL"
            ).format(
                target=target,
                key=key,
                person=person,
                stage=sql.Identifier(stage),
                local=sql.Identifier(local),
                type=sql.SQL(types[local]),
            ),
        )

    def rows(self, records: list[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Staging rows: person, version; its key in this table, or its local id if it is
        this store's provisional person; its former PINs and former local ids; the required
        columns it has no value for; then each column's merged value and whether the merged
        record has the field at all (a field nobody has set leaves the column alone)."""
        rows = []
        for record in records:
            person = record["person"]
            local = local_id_of(person, self.mapping.store) if self.mapping.local_key else None
            key = None if local is not None else person
            former = record.get("former_keys") or []
            pins = (
                [k for k in former if not is_provisional(k)]
                if key and not is_provisional(key)
                else []
            )
            own = [i for k in former if (i := local_id_of(k, self.mapping.store)) is not None]
            values = record["values"]
            missing = missing_required(self.required, self.mapping.columns, values)
            row: list[Any] = [person, record["version"], key, local, pins, own if key else []]
            row += [missing]
            for name in self.mapping.columns:
                row += [values[name], True] if name in values else [None, False]
            rows.append(tuple(row))
        return rows

    def apply(self, conn: Connection, records: list[Mapping[str, Any]]) -> Applied:
        """Rows written, people skipped as stale and people who start waiting, for
        ``records``, inside the open transaction."""
        records = [r for r in records if self.mapping.accepts(r["person"])]
        if not records:
            return Applied(0, 0, [])
        with conn.cursor() as cursor:
            with cursor.copy(self.copy) as copy:
                for row in self.rows(records):
                    copy.write_row(row)
            if any(r.get("former_keys") for r in records):
                # rows still under a key the person was known by take its key first
                cursor.execute(self.rename)
                if self.rename_local is not None:
                    cursor.execute(self.rename_local)
            cursor.execute(self.mark_fresh)
            fresh = cursor.rowcount
            cursor.execute(self.lock)
            if self.lock_local is not None:
                cursor.execute(self.lock_local)
            cursor.execute(self.update)
            written = cursor.rowcount
            if self.update_local is not None:
                cursor.execute(self.update_local)
                written += cursor.rowcount
            cursor.execute(self.insert)
            written += cursor.rowcount
        with conn.cursor(row_factory=class_row(Waiting)) as waits:
            started = waits.execute(self.wait).fetchall()
        return Applied(written, len(records) - fresh, started)


@dataclass(frozen=True)
class Applied:
    written: int
    stale: int
    started_waiting: list[Waiting]


@dataclass(frozen=True)
class Waiting:
    """A person a sink has not inserted into ``table``: it has no value yet for ``missing``,
    columns the table requires."""

    table: str
    person: str
    version: int
    missing: list[str]
    since: datetime


def missing_required(
    required: Collection[str], columns: Mapping[str, str], values: Mapping[str, Any]
) -> list[str]:
    """The ``required`` columns (of ``columns``: field -> column) whose field the merged
    record's ``values`` lacks or holds as null, in mapping order."""
    return [
        column
        for name, column in columns.items()
        if column in required and values.get(name) is None
    ]


def waiting_people(conn: Connection, tables: list[str]) -> list[Waiting]:
    """The people waiting to be inserted into ``tables``, longest waiting first; none if no
    sink has run on this store yet."""
    try:
        with conn.cursor(row_factory=class_row(Waiting)) as cursor:
            exists = conn.execute("SELECT to_regclass('_civsync.waiting') IS NOT NULL").fetchone()
            if not exists or not exists[0]:
                return []
            return cursor.execute(
                'SELECT target AS "table", person, version, missing, since FROM _civsync.waiting'
                " WHERE target = ANY(%s) ORDER BY since, target, person",
                (tables,),
            ).fetchall()
    except psycopg.Error as exc:
        raise classify(exc, "reading the people waiting to be inserted") from exc


def _required_columns(conn: Connection, table: str) -> set[str]:
    """Columns of ``table`` an insert must give a value: NOT NULL, without a default, and
    neither an identity nor a generated column."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
        " AND NOT attisdropped AND attnotnull AND NOT atthasdef AND attidentity = ''"
        " AND attgenerated = ''",
        (table,),
    ).fetchall()
    return {str(name) for (name,) in rows}


def _column_types(conn: Connection, table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
        (table,),
    ).fetchall()
    if not rows:
        raise FatalError(f"the sink's target table {table} does not exist")
    return {str(name): str(type_) for name, type_ in rows}


def _qualified(table: str) -> sql.Composed:
    schema, _, name = table.partition(".")
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(name))
