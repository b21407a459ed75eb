"""A PostgreSQL cluster per store, from Debian's packages, with wal_level=logical (capture
reads pgoutput, built into the server).

The cluster's superuser is the store user from the settings (a local development cluster
only). Run as root, the server runs as the ``postgres`` system user, as PostgreSQL requires.

Every start secures the cluster, idempotently, old clusters included: TLS on (``ssl = on``,
with a self-signed certificate for the store's host, made once; clients that verify it use
``<root>/ca.crt`` as ``sslrootcert``), and a ``pg_hba.conf`` where every password is checked
by SCRAM-SHA-256, every role but the owner must use TLS, and only the owner may connect for
physical replication (a copy of the whole cluster). ``secure`` then ``reload`` does the same
for a cluster already running.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg
from psycopg import sql

from civsync.services.process import LauncherError, require_free_port, run_checked
from civsync.services.tls import self_signed
from connectors.settings import StoreSettings

OWNER = "postgres"  # the OS user that owns and runs the clusters when civsync runs as root
MIN_PG_MAJOR = 15
_SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "20",
    "track_commit_timestamp": "on",
    "shared_buffers": "128MB",
    "unix_socket_directories": "''",
    "log_line_prefix": "'%m [%p] %d '",
    # no row data in the server's log: a rejected value would be in DETAIL, CONTEXT and the
    # failed statement (docs/security.md)
    "log_error_verbosity": "terse",
    "log_min_error_statement": "panic",
}
_TLS_SETTING = "ssl = on  # civsync local launcher: server.crt and server.key in the data dir\n"
_HBA = """# Written by civsync's local launcher at each start: edits here are overwritten.
# SCRAM-SHA-256 passwords; every role but the owner over TLS; physical replication (a copy
# of the whole cluster) for the owner only. Capture streams its logical slot over a
# database connection, which the first lines cover (docs/security.md).
hostssl  all          all    127.0.0.1/32  scram-sha-256
hostssl  all          all    ::1/128       scram-sha-256
host     all          {user}  127.0.0.1/32  scram-sha-256
host     all          {user}  ::1/128       scram-sha-256
host     replication  {user}  127.0.0.1/32  scram-sha-256
host     replication  {user}  ::1/128       scram-sha-256
"""


@dataclass(frozen=True)
class PostgresService:
    """Owns ``<run>/postgres/<name>``: one cluster serving one store's database."""

    name: str
    root: Path
    store: StoreSettings

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "postgresql.log"

    @property
    def ca_file(self) -> Path:
        """The server's self-signed certificate, for clients' ``sslrootcert``."""
        return self.root / "ca.crt"

    def running(self) -> bool:
        if not (self.data_dir / "PG_VERSION").is_file():
            return False
        status = _run_as_owner([str(_bindir() / "pg_ctl"), "status", "-D", str(self.data_dir)])
        return status.returncode == 0

    def start(self) -> None:
        require_free_port(f"PostgreSQL ({self.name})", self.store.host, self.store.port)
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb()
        self.secure()
        run_checked(
            _as_owner(
                [
                    str(_bindir() / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                ]
            ),
            what=f"starting PostgreSQL for the {self.name} store (log: {self.log_file})",
        )
        self._ensure_database()

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> bool:
        """Stop the server: ``fast`` (clean: sessions end, a checkpoint), or ``immediate``
        (as a crash: recovery from the WAL on the next start)."""
        if not self.running():
            return False
        run_checked(
            _as_owner(
                [str(_bindir() / "pg_ctl"), "stop", "-m", mode, "-w", "-D", str(self.data_dir)]
            ),
            what=f"stopping PostgreSQL for the {self.name} store",
        )
        return True

    def secure(self) -> None:
        """TLS on with the store's certificate (made once), and civsync's ``pg_hba.conf``;
        a running server takes them at its next ``reload``."""
        key, cert = self.data_dir / "server.key", self.data_dir / "server.crt"
        if not (key.is_file() and cert.is_file()):
            key_pem, cert_pem = self_signed(self.store.host, f"civsync {self.name} store")
            # PostgreSQL refuses a key others can read; it never is, not even for a moment
            with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as out:
                out.write(key_pem)
            cert.write_bytes(cert_pem)
        shutil.copyfile(cert, self.ca_file)
        conf = self.data_dir / "postgresql.conf"
        if _TLS_SETTING not in conf.read_text():
            with conf.open("a") as text:
                text.write(_TLS_SETTING)
        user = '"' + self.store.user.replace('"', '""') + '"'
        (self.data_dir / "pg_hba.conf").write_text(_HBA.format(user=user))
        for written in (key, cert, self.ca_file):
            _give_to_owner(written)

    def reload(self) -> None:
        """Make the running server read its configuration files again."""
        run_checked(
            _as_owner([str(_bindir() / "pg_ctl"), "reload", "-D", str(self.data_dir)]),
            what=f"reloading PostgreSQL for the {self.name} store",
        )

    def healthy(self) -> bool:
        try:
            with psycopg.connect(self.store.conninfo(), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _initdb(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(self.store.password.get_secret_value() + "\n")
        _give_to_owner(self.root)
        try:
            run_checked(
                _as_owner(
                    [
                        str(_bindir() / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        self.store.user,
                        f"--pwfile={pwfile}",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                        "--auth=scram-sha-256",
                    ]
                ),
                what=f"initdb for the {self.name} store",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        settings = {
            **_SERVER_SETTINGS,
            "port": str(self.store.port),
            "listen_addresses": f"'{self.store.host}'",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# civsync local launcher\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _ensure_database(self) -> None:
        admin = self.store.model_copy(update={"dbname": "postgres"})
        with psycopg.connect(admin.conninfo(), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.store.dbname,)
            ).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.store.dbname))
                )


def cluster_root(run_dir: Path, name: str) -> Path:
    """Where the ``name`` cluster lives: under ``run_dir``, unless the server cannot reach it.

    As root, the server runs as ``postgres``, which cannot enter private directories such as
    ``/root``; the cluster then lives in the postgres home, in a folder named after
    ``run_dir`` so that two checkouts never share a cluster.
    """
    preferred = run_dir / "postgres" / name
    if os.geteuid() != 0 or _reachable_by_postgres(run_dir):
        return preferred
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path("/var/lib/postgresql/civsync") / digest / name


def _reachable_by_postgres(directory: Path) -> bool:
    probe = subprocess.run(
        ["runuser", "-u", OWNER, "--", "test", "-x", str(directory)],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _bindir() -> Path:
    """The newest installed PostgreSQL (>= 15) server binaries from Debian's layout."""
    candidates = sorted(
        (
            p
            for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")
            if p.parent.parent.name.isdigit()
        ),
        key=lambda p: int(p.parent.parent.name),
    )
    usable = [p.parent for p in candidates if int(p.parent.parent.name) >= MIN_PG_MAJOR]
    if not usable:
        raise LauncherError(
            "PostgreSQL >= 15 server is not installed; run `make setup` "
            "(apt-get install postgresql-15)"
        )
    return usable[-1]


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run through the postgres system user."""
    if os.geteuid() != 0:
        return argv
    if shutil.which("runuser") is None:
        raise LauncherError("running as root needs runuser (util-linux) to drop to 'postgres'")
    return ["runuser", "-u", OWNER, "--", *argv]


def _run_as_owner(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_as_owner(argv), capture_output=True, text=True, check=False)


def _give_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user=OWNER, group=OWNER)
        for child in path.rglob("*"):
            shutil.chown(child, user=OWNER, group=OWNER)
