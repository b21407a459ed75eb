"""Each engine part's own PostgreSQL role (docs/security.md): it logs in with SCRAM over TLS,
can do its part's work, and the database refuses it everything else, including another
part's work. An engine started by the runner connects with these roles and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from civsync.config import CivsyncSettings
from civsync.services.postgres import PostgresService, cluster_root
from connectors.capture.slot import ReplicationSlot, ensure_apply_origins
from connectors.capture.stream import prepare
from connectors.merge.sink import sink_mappings
from connectors.merge.target import Target
from connectors.migrations import drop, ensure_roles, recreate
from connectors.postgres import Connection, StoreError, StoreRejectedError, connect
from connectors.settings import RoleSettings, StoreSettings
from engine.errors import FatalError
from tests.integration.conftest import RUN_DIR
from tests.integration.merge_support import wait_for
from tests.integration.profile_support import Profile

Stores = dict[str, StoreSettings]
LOCAL_ONLY = "TLS and pg_hba.conf are the local launcher's (civsync services up)"


@pytest.fixture(scope="module")
def stores(settings: CivsyncSettings) -> Iterator[Stores]:
    """Both stores migrated in databases of this module's own, the parts' roles and each
    database's capture publication ready (as `civsync migrate` makes them), civsync's
    replication origins, and an origin named after each database for the tests' writes."""
    name = f"it_roles_{uuid.uuid4().hex[:8]}"
    servers = settings.stores()
    owned = {store: recreate(server, f"{name}_{store}", store) for store, server in servers.items()}
    for store, owner in owned.items():
        with connect(owner) as conn:
            ensure_roles(conn, store, settings.roles, settings.merge, [f"{name}_{store}"])
            ensure_apply_origins(conn)
            conn.execute("SELECT pg_replication_origin_create(%s)", (owner.dbname,))
            conn.commit()
    yield owned
    for store, owner in owned.items():
        with connect(owner, autocommit=True) as conn:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (owner.dbname,))
        drop(servers[store], owner.dbname)


def login(settings: CivsyncSettings, stores: Stores, part: str, store: str) -> StoreSettings:
    """``store``'s test database, reached with ``part``'s own role."""
    return settings.part_store(part, store).model_copy(update={"dbname": stores[store].dbname})


def refused(store: StoreSettings, statement: str) -> str:
    """How the store refuses ``statement`` to ``store``'s user: the SQLSTATE (42501 is
    insufficient privilege), or 'login' when the user cannot even connect."""
    try:
        conn = connect(store)
    except StoreError:
        return "login"
    with conn:
        try:
            conn.execute(statement)
        except psycopg.Error as exc:
            return exc.sqlstate or "?"
    pytest.fail(f"{store.user} was allowed: {statement}")


def test_each_part_logs_in_with_scram_over_tls(
    settings: CivsyncSettings, stores: Stores, services_mode: str
) -> None:
    for store, owner in stores.items():
        for part, role in settings.roles.in_store(store).items():
            with connect(login(settings, stores, part, store)) as conn:
                row = conn.execute(
                    "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                ).fetchone()
            assert row is not None
            assert row[0] == role.user
            assert row[1] or services_mode != "local", f"{part} reached {store} without TLS"
            with connect(owner) as conn:
                kept = conn.execute(
                    "SELECT rolpassword LIKE 'SCRAM-SHA-256$%%', rolsuper, rolreplication,"
                    " rolcreaterole, rolcreatedb FROM pg_authid WHERE rolname = %s",
                    (role.user,),
                ).fetchone()
            assert kept == (True, False, part == "capture", False, False)
        wrong = login(settings, stores, "capture", store).model_copy(
            update={"password": SecretStr("not-the-password")}
        )
        with pytest.raises(StoreError, match="password authentication failed"):
            connect(wrong).close()


def test_the_local_stores_refuse_parts_without_tls_and_physical_replication(
    settings: CivsyncSettings, stores: Stores, services_mode: str
) -> None:
    if services_mode != "local":
        pytest.skip(LOCAL_ONLY)
    for store, owner in stores.items():
        capture = login(settings, stores, "capture", store)
        plaintext = capture.model_copy(update={"sslmode": "disable"})
        with pytest.raises(StoreError, match=r"no pg_hba\.conf entry"):
            connect(plaintext).close()
        with pytest.raises(psycopg.OperationalError, match="replication connection"):
            psycopg.connect(capture.conninfo(), replication="true").close()
        # the server's certificate checks out against the launcher's CA file
        service = PostgresService(store, cluster_root(RUN_DIR, store), owner)
        verified = owner.model_copy(
            update={"sslmode": "verify-full", "sslrootcert": service.ca_file}
        )
        with connect(verified) as conn:
            ssl = conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            assert ssl.fetchone() == (True,)


def test_capture_starts_streams_and_reads_but_writes_no_person(
    settings: CivsyncSettings, stores: Stores
) -> None:
    civil = login(settings, stores, "capture", "civil")
    with connect(civil, autocommit=True) as conn:
        prepare(conn, ReplicationSlot(civil.dbname))  # capture's own start-up, its slot
        assert conn.execute("SELECT count(*) FROM person").fetchone() == (0,)
        queued = conn.execute("SELECT count(*) FROM _civsync.snapshot_jobs").fetchone()
        assert queued == (5,)  # the initial snapshot of the five civil-status tables
    population = login(settings, stores, "capture", "population")
    for store, statement in [
        (civil, "INSERT INTO person (pin, full_name) VALUES ('001090000001', 'A')"),
        (civil, "UPDATE person SET full_name = 'B'"),
        (civil, "DELETE FROM birth_registration"),
        (population, "UPDATE citizen SET full_name = 'B'"),
        (population, "INSERT INTO _civsync.applied VALUES ('t', 'p', 1)"),
        (civil, "SELECT pg_replication_origin_session_setup('civsync_apply')"),
        (civil, "CREATE PUBLICATION everything FOR ALL TABLES"),
    ]:
        assert refused(store, statement) == "42501", statement
    for statement in ("DROP TABLE person", "ALTER TABLE person ADD COLUMN x text"):
        assert refused(civil, statement) == "42501", statement  # must be owner


def _person(pin: str, name: str) -> dict[str, Any]:
    return {"person": pin, "version": 1, "former_keys": [], "values": {"full_name": name}}


def _apply(store: StoreSettings, settings: CivsyncSettings, pin: str) -> int:
    """The civil sink's own statements for one new person, bound to a replication origin,
    as ``store``'s user; rows written."""
    (mapping,) = sink_mappings(settings.merge, "civil")
    with connect(store, autocommit=True) as conn:
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", (store.dbname,))
        target = Target.build(conn, mapping, 0)
        with conn.transaction():
            return target.apply(conn, [_person(pin, "Nguyễn Văn Sink")]).written


def test_a_sink_writes_its_own_tables_and_nothing_else(
    settings: CivsyncSettings, stores: Stores
) -> None:
    sink = login(settings, stores, "sink_civil", "civil")
    assert _apply(sink, settings, "001090000201") == 1
    with connect(stores["civil"]) as owner:
        found = owner.execute("SELECT full_name FROM person WHERE pin = '001090000201'")
        assert found.fetchone() == ("Nguyễn Văn Sink",)
    for statement in [
        "DELETE FROM person",
        "TRUNCATE person",
        "SELECT * FROM birth_registration",
        "INSERT INTO death_registration (book) VALUES ('x')",
        "UPDATE _civsync.capture_state SET slot_name = 'x'",
        "DROP TABLE person",
        "ALTER TABLE person ADD COLUMN x text",
    ]:
        assert refused(sink, statement) == "42501", statement
    elsewhere = login(settings, stores, "sink_civil", "population")
    assert refused(elsewhere, "UPDATE citizen SET full_name = 'B'") in {"login", "42501"}


def test_reconcile_only_reads_the_person_tables(settings: CivsyncSettings, stores: Stores) -> None:
    for store, table in (("civil", "person"), ("population", "citizen")):
        reader = login(settings, stores, "reconcile", store)
        with connect(reader) as conn:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
        for statement in ("UPDATE {} SET full_name = 'B'", "DELETE FROM {}"):
            assert refused(reader, statement.format(table)) == "42501"
    assert refused(login(settings, stores, "reconcile", "civil"), "TABLE correction") == "42501"


def test_a_part_given_another_parts_login_is_refused(
    settings: CivsyncSettings, stores: Stores
) -> None:
    capture = login(settings, stores, "capture", "civil")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _apply(capture, settings, "001090000301")  # the sink's work, with capture's login
    for part in ("sink_civil", "reconcile"):
        with (
            connect(login(settings, stores, part, "civil"), autocommit=True) as conn,
            pytest.raises(StoreRejectedError, match="42501"),
        ):
            prepare(conn, ReplicationSlot(capture.dbname))  # capture's start-up


def test_a_part_with_a_wrong_password_stops_with_the_refusal(
    settings: CivsyncSettings, stores: Stores
) -> None:
    """A refused login is not a store that is away: the part exits 4 (refused) with the
    server's reason, instead of waiting for a store that will never let it in."""
    sink = login(settings, stores, "sink_civil", "civil")
    env = {
        **os.environ,
        "CIVSYNC_CIVIL__USER": sink.user,
        "CIVSYNC_CIVIL__PASSWORD": "not-the-sinks-password",
        "CIVSYNC_CIVIL__DBNAME": sink.dbname,
    }
    done = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "sink", "run", "civil"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 4, done.stderr[-2000:]
    assert "refused this login" in done.stderr
    assert f'password authentication failed for user "{sink.user}"' in done.stderr
    assert "not-the-sinks-password" not in done.stderr


def test_roles_get_exactly_their_grants_and_never_the_owners(
    settings: CivsyncSettings, stores: Stores
) -> None:
    owner, sink = stores["civil"], settings.roles.sink_civil.user
    with connect(owner) as conn:
        conn.execute(sql.SQL("GRANT DELETE ON person TO {}").format(sql.Identifier(sink)))
        ensure_roles(conn, "civil", settings.roles, settings.merge)  # again: as settings say
        privileges = conn.execute(
            "SELECT string_agg(privilege_type, ',' ORDER BY privilege_type)"
            " FROM information_schema.role_table_grants"
            " WHERE grantee = %s AND table_name = 'person'",
            (sink,),
        ).fetchone()
        assert privileges == ("INSERT,SELECT,UPDATE",)
        as_owner = settings.roles.model_copy(
            update={"reconcile": RoleSettings(user=owner.user, password=owner.password)}
        )
        with pytest.raises(FatalError, match="never a part's role"):
            ensure_roles(conn, "civil", as_owner, settings.merge)
        still = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (owner.user,))
        assert still.fetchone() == (True,)


def _connected(conn: Connection) -> dict[str, bool]:
    """Who else is connected to ``conn``'s database, and whether all of them over TLS."""
    rows = conn.execute(
        "SELECT a.usename, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
    ).fetchall()
    seen: dict[str, bool] = {}
    for user, ssl in rows:
        seen[str(user)] = seen.get(str(user), True) and bool(ssl)
    return seen


def test_the_engine_runs_with_each_parts_role(
    profile: Profile, settings: CivsyncSettings, services_mode: str
) -> None:
    roles = settings.roles
    wanted = {
        "civil": {roles.capture.user: True, roles.sink_civil.user: True},
        "population": {roles.capture.user: True, roles.sink_population.user: True},
    }
    for store, conn in (("civil", profile.civil), ("population", profile.population)):
        seen = _connected(conn)
        if services_mode != "local":
            seen = dict.fromkeys(seen, True)  # TLS is the local launcher's
        assert seen == wanted[store]
    pin = "001090000401"
    profile.insert(profile.civil, "person", pin=pin, full_name="Lý Thị Vai", sex="female")

    def synced() -> bool:
        query = "SELECT count(*) FROM citizen WHERE pin = %s"
        return bool(profile.one(profile.population, query, pin) == 1)

    wait_for(synced, "a person synced by parts on their own roles", timeout_s=120)
