"""The stores' SQL schemas on real PostgreSQL: applied once, in order, guarded against drift,
and the rules they promise (append-only acts, partial dates, code lists) hold."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql

from civsync.config import CivsyncSettings
from connectors.migrations import MigrationDriftError, migrate, migrations
from connectors.postgres import Connection, connect
from connectors.settings import StoreSettings


@contextmanager
def fresh_database(
    server: StoreSettings, name: str, *, autocommit: bool = False
) -> Iterator[Connection]:
    """A connection to a new, empty database in ``server``, dropped afterwards."""
    with connect(server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            with connect(server.model_copy(update={"dbname": name}), autocommit=autocommit) as conn:
                yield conn
        finally:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(params=["civil", "population"])
def fresh_store(
    request: pytest.FixtureRequest, settings: CivsyncSettings, unique_name: str
) -> Iterator[tuple[str, Connection]]:
    store = request.param
    with fresh_database(settings.stores()[store], unique_name) as conn:
        yield store, conn


def test_migrations_apply_once_and_record_what_they_applied(
    fresh_store: tuple[str, Connection],
) -> None:
    store, conn = fresh_store
    names = [m.name for m in migrations(store)]
    assert migrate(conn, store) == names
    assert migrate(conn, store) == []  # up to date: nothing runs twice
    recorded = conn.execute("SELECT name FROM _civsync.migrations ORDER BY name").fetchall()
    assert [r[0] for r in recorded] == names
    table = "person" if store == "civil" else "citizen"
    identity = conn.execute(
        "SELECT relreplident FROM pg_class WHERE oid = %s::regclass", (table,)
    ).fetchone()
    assert identity == ("f",)  # capture gets whole old rows


def test_an_applied_migration_that_changed_stops_the_run(
    fresh_store: tuple[str, Connection],
) -> None:
    store, conn = fresh_store
    migrate(conn, store)
    conn.execute("UPDATE _civsync.migrations SET checksum = 'edited'")
    conn.commit()
    with pytest.raises(MigrationDriftError, match=f"{store}/001_"):
        migrate(conn, store)


def test_the_civil_status_schema_keeps_acts_append_only_and_dates_honest(
    settings: CivsyncSettings, unique_name: str
) -> None:
    with fresh_database(settings.civil, unique_name, autocommit=True) as conn:
        migrate(conn, "civil")
        person = conn.execute(
            "INSERT INTO person (full_name, birth_date, sex) VALUES (%s, %s, %s) RETURNING id",
            ("Nguyễn Văn Bình", "1942", "unknown"),  # a legacy record: year only
        ).fetchone()
        assert person is not None
        act = (
            "INSERT INTO birth_registration (book, number, registered_on, commune_code,"
            " commune_code_list, person_id, full_name, birth_date)"
            " VALUES ('01/1942', %s, '1942-03-01', '00001', %s, %s, 'Nguyễn Văn Bình', '1942')"
            " RETURNING id"
        )
        birth = conn.execute(act, ("12", "pre-2025", person[0])).fetchone()
        assert birth is not None
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute("UPDATE birth_registration SET full_name = 'x'")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(act, ("13", "2024", person[0]))  # not a code list
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE person SET birth_date = '1942-13'")
        with pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not exist"):
            conn.execute(
                "INSERT INTO correction (book, number, registered_on, commune_code,"
                " commune_code_list, person_id, corrects, corrected_id, field, reason)"
                " VALUES ('c', '1', now(), '00004', '2025', %s, 'death_registration', %s,"
                " 'date_of_death', 'keying error')",
                (person[0], birth[0]),
            )
