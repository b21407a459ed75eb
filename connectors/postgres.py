"""Connections to the two PostgreSQL stores, and PostgreSQL errors classified by SQLSTATE.

A store is usable by civsync only with ``wal_level=logical``; ``check_capture_ready`` says so
early and clearly instead of failing later when a replication slot is created.
"""

from __future__ import annotations

import re

import psycopg

from connectors.settings import StoreSettings
from engine.errors import CivsyncError, FatalError, RetriableError

# SQLSTATE classes and codes after which the same statement may succeed on a new attempt.
_RETRIABLE_CLASSES = frozenset({"08", "53", "57"})  # connection, resources, operator intervention
_RETRIABLE_CODES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock timeout
_FATAL_OPERATOR_CODES = frozenset({"57014"})  # query_canceled: cancelled on purpose
# libpq reports no SQLSTATE for a refused login (28P01, 28000, 3D000, 42501 at connect): the
# server's message is the only evidence. A server whose lc_messages is not English words it
# differently, and its refusal is then taken for a store that is away (the part waits).
_REFUSED_LOGIN = re.compile(
    r"FATAL:\s+(password authentication failed|no pg_hba\.conf entry|pg_hba\.conf rejects"
    r"|permission denied for database|(role|database) \"[^\"]*\" does not exist)"
)


class StoreError(CivsyncError):
    """Marker base for store failures; ``sqlstate`` is kept when the server gave one."""

    sqlstate: str | None = None


class StoreUnavailableError(StoreError, RetriableError):
    """The store could not be reached, or the transaction may succeed if tried again."""


class StoreRejectedError(StoreError, FatalError):
    """The store refused the statement for a reason retrying cannot fix."""


def classify(exc: psycopg.Error, doing: str) -> StoreError:
    """The civsync error for ``exc``, decided by its SQLSTATE; a connection without one is
    away (retriable) unless the server refused the login (``_REFUSED_LOGIN``). Its message
    is the server's primary message and hint only: DETAIL and CONTEXT can quote row values
    (a citizen's data), which must not reach logs or quarantine details."""
    sqlstate = exc.sqlstate
    retriable = sqlstate is None and isinstance(exc, psycopg.OperationalError)
    if retriable and _REFUSED_LOGIN.search(str(exc)):
        return StoreRejectedError(
            f"{doing}: the store refused this login ({' '.join(str(exc).split())}); check the user,"
            " password and database in the settings (`civsync roles` makes the parts' roles)"
        )
    if sqlstate is not None and sqlstate not in _FATAL_OPERATOR_CODES:
        retriable = sqlstate[:2] in _RETRIABLE_CLASSES or sqlstate in _RETRIABLE_CODES
    error_class = StoreUnavailableError if retriable else StoreRejectedError
    error = error_class(f"{doing}: [{sqlstate or 'no sqlstate'}] {_without_data(exc)}")
    error.sqlstate = sqlstate
    return error


def _without_data(exc: psycopg.Error) -> str:
    """The server's message without the parts that may quote data; a client-side failure
    (no SQLSTATE: a connection refused) as psycopg words it."""
    primary = exc.diag.message_primary
    if exc.sqlstate is None or not primary:
        return str(exc)
    hint = exc.diag.message_hint
    return f"{primary} (hint: {hint})" if hint else primary


Connection = psycopg.Connection[tuple[object, ...]]


def connect(store: StoreSettings, *, autocommit: bool = False) -> Connection:
    """A connection to ``store``; StoreUnavailableError if it cannot be reached."""
    try:
        return psycopg.connect(store.conninfo(), autocommit=autocommit)
    except psycopg.Error as exc:
        raise classify(exc, f"connecting to {store.dbname} at {store.host}:{store.port}") from exc


def check_capture_ready(conn: Connection) -> None:
    """FatalError naming the setting if the server cannot do logical decoding."""
    wal_level = conn.execute("SHOW wal_level").fetchone()
    if wal_level is None or wal_level[0] != "logical":
        found = None if wal_level is None else wal_level[0]
        raise StoreRejectedError(
            f"wal_level is {found!r}; civsync captures through logical decoding and needs "
            "wal_level=logical (set it in postgresql.conf and restart the server)"
        )


def ensure_tables(conn: Connection, ddl: str, tables: tuple[str, ...]) -> None:
    """Run ``ddl`` (``CREATE ... IF NOT EXISTS`` of civsync's own tables, on an autocommit
    connection) unless every one of ``tables`` exists: PostgreSQL checks the CREATE privilege
    even for a schema or table that exists, and a part's role has none once ``civsync roles``
    has made its tables. Two parts creating them at once collide (IF NOT EXISTS is not safe
    against a concurrent create): the loser runs it again and finds them."""
    found = conn.execute(
        "SELECT count(to_regclass(name)) FROM unnest(%s::text[]) AS name", (list(tables),)
    ).fetchone()
    if found is None or found[0] != len(tables):
        for attempt in range(3):  # IF NOT EXISTS races: two parts starting on a new store
            try:
                conn.execute(ddl)
            except psycopg.errors.UniqueViolation:  # the other created it meanwhile
                if attempt == 2:  # noqa: PLR2004 - the last of the three
                    raise
            else:
                return
