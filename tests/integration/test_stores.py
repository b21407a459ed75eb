"""Both PostgreSQL stores: reachable, logical decoding with pgoutput, errors by SQLSTATE."""

from __future__ import annotations

import psycopg
import pytest
from pydantic import SecretStr

from civsync.config import CivsyncSettings
from connectors.capture.pgoutput import PgOutputDecoder, TransactionEnd
from connectors.capture.replication import StoreCatalog
from connectors.postgres import (
    StoreRejectedError,
    StoreUnavailableError,
    check_capture_ready,
    classify,
    connect,
)
from connectors.settings import StoreSettings
from engine.events import ChangeEvent, parse_lsn
from tests.http_probe import free_port
from tests.integration.capture_support import q

STORES = ["civil", "population"]


def _store(settings: CivsyncSettings, name: str) -> StoreSettings:
    return settings.stores()[name]


@pytest.mark.parametrize("name", STORES)
def test_store_decodes_committed_changes_through_pgoutput(
    settings: CivsyncSettings, name: str, unique_name: str
) -> None:
    """The server's own pgoutput bytes, through civsync's decoder and catalog."""
    with connect(_store(settings, name), autocommit=True) as conn:
        check_capture_ready(conn)
        conn.execute(q("CREATE TABLE {t} (pin text PRIMARY KEY, full_name text)", unique_name))
        conn.execute(q("CREATE PUBLICATION {t} FOR TABLE {t}", unique_name))
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (unique_name,))
        try:
            conn.execute(
                q("INSERT INTO {t} VALUES (%s, %s)", unique_name),
                ("001099012345", "Phạm Thị Ngọc Ánh"),
            )
            rows = conn.execute(
                "SELECT lsn::text, data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL,"
                " 'proto_version', '1', 'publication_names', %s)",
                (unique_name, unique_name),
            ).fetchall()
            decoder = PgOutputDecoder(name, unique_name, StoreCatalog(conn))
            decoded: list[object] = []
            for lsn, data in rows:
                assert isinstance(data, bytes)
                decoded += decoder.decode(parse_lsn(str(lsn)), data)
        finally:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (unique_name,))
            conn.execute(q("DROP PUBLICATION {t}", unique_name))
            conn.execute(q("DROP TABLE {t}", unique_name))

    inserts = [e for e in decoded if isinstance(e, ChangeEvent)]
    assert len(inserts) == 1
    assert inserts[0].source.table == unique_name
    assert inserts[0].after == {"pin": "001099012345", "full_name": "Phạm Thị Ngọc Ánh"}
    assert inserts[0].key == {"pin": "001099012345"}
    assert isinstance(decoded[-1], TransactionEnd)


def test_the_two_stores_are_separate_servers(settings: CivsyncSettings) -> None:
    identities = set()
    for name in STORES:
        with connect(_store(settings, name)) as conn:
            row = conn.execute(
                "SELECT current_database(), system_identifier FROM pg_control_system()"
            ).fetchone()
            assert row is not None
            assert row[0] == name
            identities.add(row[1])
    assert len(identities) == 2


def test_a_refused_login_is_fatal_and_reported_without_the_password(
    settings: CivsyncSettings,
) -> None:
    # libpq reports a failed connection without a SQLSTATE; the server's words tell a refused
    # login (fatal: retrying cannot fix a password) from a store that is away. The server's
    # reason is kept, the password is not.
    wrong = settings.civil.model_copy(update={"password": SecretStr("not-the-password")})
    with pytest.raises(StoreRejectedError, match="password authentication failed") as caught:
        connect(wrong)
    assert "not-the-password" not in str(caught.value)
    away = settings.civil.model_copy(update={"port": free_port(), "connect_timeout_s": 2})
    with pytest.raises(StoreUnavailableError):
        connect(away)


def test_statement_errors_are_classified_by_sqlstate(
    settings: CivsyncSettings, unique_name: str
) -> None:
    with (
        connect(settings.population, autocommit=True) as conn,
        connect(settings.population) as other,
    ):
        conn.execute(q("CREATE TABLE {t} (pin text PRIMARY KEY)", unique_name))
        try:
            conn.execute(q("INSERT INTO {t} VALUES ('001099012345')", unique_name))
            with pytest.raises(psycopg.Error) as duplicate:
                conn.execute(q("INSERT INTO {t} VALUES ('001099012345')", unique_name))
            rejected = classify(duplicate.value, "inserting")
            assert isinstance(rejected, StoreRejectedError)
            assert rejected.sqlstate == "23505"
            assert "001099012345" in str(duplicate.value)  # the server's DETAIL quotes the row
            assert "001099012345" not in str(rejected)  # civsync's error never does
            assert "duplicate key value" in str(rejected)

            other.execute(q("SELECT * FROM {t} FOR UPDATE", unique_name))  # holds the row lock
            conn.execute("SET lock_timeout = '100ms'")
            with pytest.raises(psycopg.Error) as locked:
                conn.execute(q("UPDATE {t} SET pin = pin", unique_name))
            retriable = classify(locked.value, "updating")
            assert isinstance(retriable, StoreUnavailableError)
            assert retriable.sqlstate == "55P03"
        finally:
            other.rollback()
            conn.execute(q("DROP TABLE {t}", unique_name))


def test_an_unreachable_store_is_retriable(settings: CivsyncSettings) -> None:
    nowhere = settings.civil.model_copy(update={"port": 1, "connect_timeout_s": 2})
    with pytest.raises(StoreUnavailableError):
        connect(nowhere)
