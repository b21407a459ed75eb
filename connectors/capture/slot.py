"""A logical replication slot read through SQL, and the origin that marks civsync's own writes.

Positions are values: the slot's ``confirmed_flush_lsn`` is the only resume point, and it is
moved (``confirm``) only after Kafka has acknowledged everything before it. A slot that has
vanished or been invalidated is reported, never silently recreated: that would skip changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from connectors.capture.wal2json import WAL2JSON_OPTIONS
from connectors.postgres import Connection, classify
from engine.errors import FatalError
from engine.events import format_lsn, parse_lsn

# Writes made in a session bound to one of these origins are civsync's own (the sinks'
# upserts); capture filters them out so they are never published as new user changes.
# PostgreSQL 15 lets one session at a time use an origin, hence one per concurrent writer.
APPLY_ORIGIN = "civsync_apply"
APPLY_ORIGINS = (APPLY_ORIGIN, *(f"{APPLY_ORIGIN}_{n}" for n in range(1, 8)))
_FETCH_ROWS = 2000


class SlotLostError(FatalError):
    """The slot is gone or invalidated; changes may have been missed. Remedy: a snapshot."""


@dataclass(frozen=True)
class SlotState:
    name: str
    confirmed_lsn: int
    wal_status: str | None
    lag_bytes: int
    active_pid: int | None


@dataclass(frozen=True)
class ReplicationSlot:
    """One wal2json slot in one store; ``tables`` (``schema.table``) narrows what it decodes."""

    name: str
    tables: tuple[str, ...] = ()

    def state(self, conn: Connection) -> SlotState | None:
        """The slot's position and lag; None if there is no such slot. A slot still being
        created has confirmed nothing yet (PostgreSQL shows no position until it reaches a
        consistent point): position 0/0, and all of the WAL as lag."""
        row = conn.execute(
            "SELECT COALESCE(confirmed_flush_lsn, '0/0')::text, wal_status, active_pid,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), COALESCE(confirmed_flush_lsn, '0/0'))::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (self.name,),
        ).fetchone()
        if row is None:
            return None
        confirmed, wal_status, active_pid, lag = row
        return SlotState(
            name=self.name,
            confirmed_lsn=parse_lsn(str(confirmed)),
            wal_status=None if wal_status is None else str(wal_status),
            lag_bytes=int(str(lag)),
            active_pid=None if active_pid is None else int(str(active_pid)),
        )

    def create(self, conn: Connection) -> int:
        """Create the slot; the LSN from which it will decode."""
        try:
            row = conn.execute(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'wal2json')",
                (self.name,),
            ).fetchone()
        except psycopg.Error as exc:
            raise classify(exc, f"creating replication slot {self.name}") from exc
        assert row is not None  # noqa: S101 - the function always returns one row
        return parse_lsn(str(row[0]))

    def require_usable(self, conn: Connection) -> SlotState:
        state = self.state(conn)
        if state is None:
            raise SlotLostError(
                f"replication slot {self.name} no longer exists, so changes made since it "
                "vanished may be missing; civsync will not recreate it silently. "
                "Run `civsync snapshot <store>` to re-read the tables."
            )
        if state.wal_status == "lost":
            raise SlotLostError(
                f"replication slot {self.name} was invalidated (WAL removed past "
                "max_slot_wal_keep_size); run `civsync snapshot <store>` to re-read the tables"
            )
        return state

    def changes(
        self, conn: Connection, upto_lsn: int, max_changes: int, *, exclude: tuple[int, ...]
    ) -> Iterator[tuple[str, str]]:
        """(lsn, wal2json document) rows after the confirmed position, without consuming them.

        Reads through a server-side cursor so a large transaction never sits whole in memory.
        """
        options = [x for kv in WAL2JSON_OPTIONS.items() for x in kv]
        options += ["filter-origins", ",".join(map(str, exclude))]  # wal2json takes origin ids
        if self.tables:
            options += ["add-tables", ",".join(self.tables)]
        query = sql.SQL(
            "SELECT lsn::text, data FROM pg_logical_slot_peek_changes({slot}, {upto}, {n}, {opts})"
        ).format(
            slot=sql.Literal(self.name),
            upto=sql.Literal(format_lsn(upto_lsn)),
            n=sql.Literal(max_changes),
            opts=sql.SQL(", ").join(sql.Literal(o) for o in options),
        )
        try:
            with conn.transaction(), conn.cursor(name=f"civsync_{self.name}") as cursor:
                cursor.itersize = _FETCH_ROWS
                cursor.execute(query)
                for lsn, data in cursor:
                    yield str(lsn), str(data)
        except psycopg.Error as exc:
            raise classify(exc, f"reading slot {self.name}") from exc

    def confirm(self, conn: Connection, lsn: int) -> None:
        """Tell PostgreSQL everything before ``lsn`` is safely in Kafka."""
        try:
            conn.execute(
                "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (self.name, format_lsn(lsn))
            )
        except psycopg.Error as exc:
            raise classify(exc, f"confirming {format_lsn(lsn)} on slot {self.name}") from exc


def ensure_apply_origins(conn: Connection) -> tuple[int, ...]:
    """The ids of the replication origins civsync's writers bind to, created if missing."""
    lookup = "SELECT roident FROM pg_replication_origin WHERE roname = %s"
    ids = []
    for name in APPLY_ORIGINS:
        try:
            row = conn.execute(lookup, (name,)).fetchone()
            if row is None:
                row = conn.execute("SELECT pg_replication_origin_create(%s)", (name,)).fetchone()
        except psycopg.errors.UniqueViolation:  # created concurrently by another civsync process
            row = conn.execute(lookup, (name,)).fetchone()
        except psycopg.Error as exc:
            raise classify(exc, "creating civsync's replication origins") from exc
        assert row is not None  # noqa: S101 - found or just created
        ids.append(int(str(row[0])))
    return tuple(ids)
