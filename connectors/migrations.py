"""The stores' SQL schemas, applied in order and recorded, each file in one transaction.

Migrations are ``schemas/sql/<store>/NNN_name.sql``, shipped with the package. Applied ones
are recorded in ``_civsync.migrations`` with a checksum; a file changed after it was applied
stops the run with its name, because the store no longer matches what the file says. Runs
take an advisory lock, so two at once cannot interleave. ``recreate`` gives a new migrated
database (the demo's and the tests' own stores).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from connectors.postgres import Connection, classify, connect
from connectors.settings import StoreSettings
from engine.errors import FatalError

_LOCK = 0x63697673  # "civs": one migration run per store at a time
_DDL = """
CREATE SCHEMA IF NOT EXISTS _civsync;
CREATE TABLE IF NOT EXISTS _civsync.migrations (
    name       text PRIMARY KEY,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


class MigrationDriftError(FatalError):
    """An applied migration's file has changed since."""


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def migrations(store: str) -> list[Migration]:
    """The migrations of ``store``, in order; FatalError if the store has none."""
    folder = resources.files("schemas") / "sql" / store
    if not folder.is_dir():
        raise FatalError(f"no migrations for store {store!r}")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [Migration(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def migrate(conn: Connection, store: str) -> list[str]:
    """Apply what is pending in ``store``; the names applied (none when up to date)."""
    wanted = migrations(store)
    applied_now = []
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            conn.execute(_DDL)
            rows = conn.execute("SELECT name, checksum FROM _civsync.migrations").fetchall()
            applied = {str(name): str(checksum) for name, checksum in rows}
            for migration in wanted:
                if migration.name in applied:
                    if applied[migration.name] != migration.checksum:
                        raise MigrationDriftError(
                            f"migration {store}/{migration.name} changed after it was applied;"
                            " add a new migration instead of editing an applied one"
                        )
                    continue
                with conn.transaction():
                    conn.execute(migration.sql)  # a file shipped with civsync, not input
                    conn.execute(
                        "INSERT INTO _civsync.migrations (name, checksum) VALUES (%s, %s)",
                        (migration.name, migration.checksum),
                    )
                applied_now.append(migration.name)
    except psycopg.Error as exc:
        raise classify(exc, f"migrating the {store} store") from exc
    return applied_now


def recreate(server: StoreSettings, dbname: str, store: str) -> StoreSettings:
    """A new, migrated database ``dbname`` of ``store`` on ``server`` (dropped first, with
    the replication slots that pin it); the settings that reach it."""
    drop(server, dbname)
    with connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    target = server.model_copy(update={"dbname": dbname})
    with connect(target) as conn:
        migrate(conn, store)
    return target


def drop(server: StoreSettings, dbname: str) -> None:
    """Drop ``dbname`` and the replication slots that pin it."""
    with connect(server, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
            " WHERE database = %s",
            (dbname,),
        )
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
        )
