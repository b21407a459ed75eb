"""A store's pgoutput replication slot and publication, and the origins of civsync's writes.

Positions are values: the slot's ``confirmed_flush_lsn`` is the only resume point, and the
stream (``connectors.capture.replication``) moves it only after Kafka has acknowledged
everything before it. A slot that has vanished or been invalidated is reported, never
silently recreated: that would skip changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from connectors.postgres import Connection, classify
from engine.errors import FatalError
from engine.events import parse_lsn

# Writes made in a session bound to one of these origins are civsync's own (the sinks'
# upserts); capture filters them out so they are never published as new user changes.
# PostgreSQL 15 lets one session at a time use an origin, hence one per concurrent writer.
APPLY_ORIGIN = "civsync_apply"
APPLY_ORIGINS = (APPLY_ORIGIN, *(f"{APPLY_ORIGIN}_{n}" for n in range(1, 8)))


class SlotLostError(FatalError):
    """The slot is gone or invalidated; changes may have been missed. Remedy: a snapshot."""


@dataclass(frozen=True)
class SlotState:
    name: str
    confirmed_lsn: int
    wal_status: str | None
    lag_bytes: int
    active_pid: int | None
    plugin: str


@dataclass(frozen=True)
class ReplicationSlot:
    """One pgoutput slot in one store, and the publication of the same name it streams:
    ``tables`` (``schema.table``), or every table (civsync's own are skipped when decoded)."""

    name: str
    tables: tuple[str, ...] = ()

    @property
    def publication(self) -> str:
        return self.name

    def state(self, conn: Connection) -> SlotState | None:
        """The slot's position and lag; None if there is no such slot. A slot still being
        created has confirmed nothing yet (PostgreSQL shows no position until it reaches a
        consistent point): position 0/0, and all of the WAL as lag."""
        row = conn.execute(
            "SELECT COALESCE(confirmed_flush_lsn, '0/0')::text, wal_status, active_pid, plugin,"
            " pg_wal_lsn_diff(pg_current_wal_lsn(), COALESCE(confirmed_flush_lsn, '0/0'))::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (self.name,),
        ).fetchone()
        if row is None:
            return None
        confirmed, wal_status, active_pid, plugin, lag = row
        return SlotState(
            name=self.name,
            confirmed_lsn=parse_lsn(str(confirmed)),
            wal_status=None if wal_status is None else str(wal_status),
            lag_bytes=int(str(lag)),
            active_pid=None if active_pid is None else int(str(active_pid)),
            plugin=str(plugin),
        )

    def publish(self, conn: Connection) -> None:
        """Create the publication, or make it cover ``tables`` again. pgoutput reads it as
        of each change's position, so it must exist before the slot decodes anything."""
        tables = sql.SQL(", ").join(sql.Identifier(*table.split(".", 1)) for table in self.tables)
        exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (self.name,))
        try:
            if exists.fetchone() is None:
                covered = sql.SQL("FOR TABLE {}").format(tables) if self.tables else None
                conn.execute(
                    sql.SQL("CREATE PUBLICATION {} {}").format(
                        sql.Identifier(self.name), covered or sql.SQL("FOR ALL TABLES")
                    )
                )
            elif self.tables:
                conn.execute(
                    sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(
                        sql.Identifier(self.name), tables
                    )
                )
        except psycopg.Error as exc:
            raise classify(exc, f"creating publication {self.name}") from exc

    def create(self, conn: Connection) -> int:
        """Create the slot; the LSN from which it will decode."""
        try:
            row = conn.execute(
                "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
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
                "vanished may be missing; civsync will not recreate it silently. Run "
                "`civsync capture reset <store>`, then capture again: a new slot, every table "
                "re-read"
            )
        if state.plugin != "pgoutput":
            raise SlotLostError(
                f"replication slot {self.name} decodes with {state.plugin}, and civsync reads"
                " pgoutput since issue 12: run `civsync capture reset <store>`, then capture"
                " again: a pgoutput slot, every table re-read"
            )
        if state.wal_status == "lost":
            raise SlotLostError(
                f"replication slot {self.name} was invalidated (WAL removed past "
                "max_slot_wal_keep_size); run `civsync capture reset <store>`, then capture "
                "again: a new slot, every table re-read"
            )
        return state


def ensure_apply_origins(conn: Connection) -> None:
    """Create the replication origins civsync's writers bind to, where missing."""
    for name in APPLY_ORIGINS:
        try:
            conn.execute(
                "SELECT pg_replication_origin_create(%s) WHERE NOT EXISTS"
                " (SELECT 1 FROM pg_replication_origin WHERE roname = %s)",
                (name, name),
            )
        except psycopg.errors.UniqueViolation:  # created concurrently by another civsync process
            continue
        except psycopg.Error as exc:
            raise classify(exc, "creating civsync's replication origins") from exc
