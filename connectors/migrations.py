"""The stores' SQL schemas, applied in order and recorded, each file in one transaction; and
the engine parts' own roles, with exactly the privileges each part needs.

Migrations are ``schemas/sql/<store>/NNN_name.sql``, shipped with the package. Applied ones
are recorded in ``_civsync.migrations`` with a checksum; a file changed after it was applied
stops the run with its name, because the store no longer matches what the file says. Runs
take an advisory lock, so two at once cannot interleave. ``recreate`` gives a new migrated
database (the demo's and the tests' own stores).

``ensure_roles`` runs as the store's owner (``civsync migrate``, ``civsync roles``, and
``civsync run`` before it starts the parts): it creates each part's login role, or sets its
password again, creates civsync's bookkeeping tables, grants each part what ``part_grants``
says and nothing else, and creates each capture slot's publication (``FOR ALL TABLES`` needs
a superuser, so capture itself cannot). Passwords reach the server as SCRAM-SHA-256 hashes.
What each role may do, and why: docs/security.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from connectors.capture.slot import ReplicationSlot
from connectors.capture.snapshot import JOBS_DDL
from connectors.capture.stream import STATE_DDL as CAPTURE_STATE_DDL
from connectors.capture.stream import captured_tables
from connectors.merge.settings import MergeSettings
from connectors.merge.sink import sink_tables
from connectors.merge.target import APPLIED_DDL
from connectors.postgres import Connection, classify, connect
from connectors.settings import RoleSettings, RolesSettings, StoreSettings
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


@dataclass(frozen=True)
class PartGrants:
    """What one engine part may do in one store's database."""

    read: tuple[str, ...] = ()  # SELECT
    write: tuple[str, ...] = ()  # SELECT, INSERT, UPDATE: the tables it applies people to
    bookkeeping: tuple[str, ...] = ()  # SELECT, INSERT, UPDATE, DELETE: its own _civsync tables
    functions: tuple[str, ...] = ()  # EXECUTE (the replication origin functions)
    replication: bool = False  # the REPLICATION attribute: logical replication slots


_REPLICATION_FUNCTIONS = (
    "pg_replication_origin_create(text)",
    "pg_replication_origin_session_setup(text)",
)


def part_grants(conn: Connection, store: str, merge: MergeSettings) -> dict[str, PartGrants]:
    """Each part's privileges in ``store``'s database, by part (``RolesSettings`` names)."""
    return {
        # reads every captured table (snapshots); creates civsync's replication origins
        "capture": PartGrants(
            read=tuple(captured_tables(conn, ())),
            bookkeeping=("_civsync.capture_state", "_civsync.snapshot_jobs"),
            functions=(_REPLICATION_FUNCTIONS[0],),
            replication=True,
        ),
        # writes the mapped tables it applies, bound to a civsync replication origin
        f"sink_{store}": PartGrants(
            write=tuple(sink_tables(merge, store)),
            bookkeeping=("_civsync.applied", "_civsync.waiting"),
            functions=(_REPLICATION_FUNCTIONS[1],),
        ),
        "reconcile": PartGrants(
            read=tuple(m.table for m in merge.person_tables() if m.store == store)
        ),
    }


def ensure_roles(
    conn: Connection,
    store: str,
    roles: RolesSettings,
    merge: MergeSettings,
    slots: Iterable[str] = (),
) -> list[str]:
    """As ``store``'s owner, in one transaction: each part's login role with exactly its
    grants in this database, and the publication of each capture slot in ``slots``. The
    users made ready. Run it again after adding tables or changing a password."""
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
            for ddl in (CAPTURE_STATE_DDL, JOBS_DDL, APPLIED_DDL):
                conn.execute(ddl)  # the parts' bookkeeping tables, owned by the owner
            plans = part_grants(conn, store, merge)
            for part, role in roles.in_store(store).items():
                _login(conn, role, replication=plans[part].replication)
                _grant(conn, role.user, plans[part])
            for slot in slots:
                ReplicationSlot(slot).publish(conn)
    except psycopg.Error as exc:
        raise classify(exc, f"creating civsync's roles in the {store} store") from exc
    return [role.user for role in roles.in_store(store).values()]


def _login(conn: Connection, role: RoleSettings, *, replication: bool) -> None:
    """Create ``role`` as a plain login, or reset its attributes and password."""
    verifier = conn.pgconn.encrypt_password(
        role.password.get_secret_value().encode(), role.user.encode(), b"scram-sha-256"
    )
    found = conn.execute(
        "SELECT rolsuper OR rolname = current_user FROM pg_roles WHERE rolname = %s",
        (role.user,),
    ).fetchone()
    if found is not None and found[0]:
        raise FatalError(
            f"{role.user} is a superuser or the store's owner, never a part's role: give the"
            " part a user of its own in [roles]"
        )
    conn.execute(
        sql.SQL(
            "{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS {} PASSWORD {}"
        ).format(
            sql.SQL("CREATE" if found is None else "ALTER"),
            sql.Identifier(role.user),
            sql.SQL("REPLICATION" if replication else "NOREPLICATION"),
            sql.Literal(verifier.decode()),
        )
    )


def _grant(conn: Connection, user: str, grants: PartGrants) -> None:
    """Revoke from ``user`` what civsync manages in this database, then grant ``grants``: a
    part's privileges follow the settings exactly, also once a table is no longer mapped."""

    def run(statement: str, *names: sql.Composable) -> None:
        conn.execute(sql.SQL(statement).format(*names, to=sql.Identifier(user)))

    db = sql.Identifier(conn.info.dbname)
    for name in _schemas(conn):
        run("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM {to}", sql.Identifier(name))
        run("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM {to}", sql.Identifier(name))
    run("REVOKE CREATE ON DATABASE {} FROM {to}", db)
    run("REVOKE CREATE ON SCHEMA _civsync FROM {to}")
    run("REVOKE EXECUTE ON FUNCTION {} FROM {to}", _functions(_REPLICATION_FUNCTIONS))
    run("GRANT CONNECT ON DATABASE {} TO {to}", db)
    tables = (*grants.read, *grants.write, *grants.bookkeeping)
    for schema in sorted({table.split(".", 1)[0] for table in tables}):
        run("GRANT USAGE ON SCHEMA {} TO {to}", sql.Identifier(schema))
    for privileges, names in (
        ("SELECT", grants.read),
        ("SELECT, INSERT, UPDATE", grants.write),
        ("SELECT, INSERT, UPDATE, DELETE", grants.bookkeeping),
    ):
        if names:
            run(f"GRANT {privileges} ON TABLE {{}} TO {{to}}", _names(names))
    if sequences := _sequences(conn, (*grants.write, *grants.bookkeeping)):
        run("GRANT USAGE ON SEQUENCE {} TO {to}", _names(sequences))
    if grants.functions:
        run("GRANT EXECUTE ON FUNCTION {} TO {to}", _functions(grants.functions))


def _schemas(conn: Connection) -> list[str]:
    """The database's own schemas (not the system's)."""
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
        " AND nspname <> 'information_schema' ORDER BY 1"
    ).fetchall()
    return [str(name) for (name,) in rows]


def _sequences(conn: Connection, tables: tuple[str, ...]) -> list[str]:
    """The sequences behind ``tables``' serial columns (``schema.name``)."""
    rows = conn.execute(
        "SELECT n.nspname || '.' || s.relname FROM pg_depend d"
        " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
        " JOIN pg_namespace n ON n.oid = s.relnamespace"
        " WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')"
        " AND d.refobjid = ANY(%s::text[]::regclass[]) ORDER BY 1",
        (list(tables),),
    ).fetchall()
    return [str(name) for (name,) in rows]


def _functions(signatures: Iterable[str]) -> sql.Composed:
    """Function signatures (civsync's constants) as a list."""
    return sql.SQL(", ").join(sql.SQL(signature) for signature in signatures)


def _names(tables: Iterable[str]) -> sql.Composed:
    """``schema.table`` names as a list of qualified identifiers."""
    return sql.SQL(", ").join(sql.Identifier(*t.split(".", 1)) for t in tables)
