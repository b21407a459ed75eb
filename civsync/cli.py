"""The ``civsync`` command line: one entry point for operators.

Each subcommand group lives here only as argument parsing and presentation; the work is
done by the modules it calls.

An error a user can cause or meet prints one line, what failed and where (the error's own
message says what to do), and exits with a documented code (docs/operations.md): 2 bad
usage or configuration, 3 a service that cannot be reached, 4 refused (a lost slot, a schema
the registry refuses, a rejected statement...); 1 is a command's own "no" (unhealthy, not
found). The traceback is shown only with ``--debug``. Anything else is a bug: it keeps its
traceback.
"""

from __future__ import annotations

import faulthandler
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import structlog
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from civsync import __version__
from civsync import logging as civsync_logging
from civsync.capture_cli import app as capture_app
from civsync.capture_cli import slot_name
from civsync.capture_cli import snapshot as capture_snapshot
from civsync.config import CivsyncSettings, kafka_env, load_settings
from civsync.demo import Demo
from civsync.history_cli import audit_app
from civsync.history_cli import history as history_command
from civsync.merge_cli import conflicts_app, merge_app, sink_app
from civsync.options import ConfigOption, MetricsHostOption
from civsync.quarantine_cli import app as quarantine_app
from civsync.reconcile import reconcile as run_reconcile
from civsync.remap import remap as run_remap
from civsync.runner import EngineProcesses, roles
from civsync.services import APICURIO_VERSION, KAFKA_VERSION, LocalServices
from civsync.status import Status, engine_status
from connectors.kafka.security import ensure_users
from connectors.migrations import ensure_roles
from connectors.migrations import migrate as run_migrations
from connectors.postgres import Connection, connect
from connectors.settings import StoreSettings
from engine.errors import CivsyncError, ConfigError, RetriableError

app = typer.Typer(
    help="civsync: change-data-capture sync of civil-status and population data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # errors are one line (main); bugs keep their traceback
)
EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_REFUSED = 2, 3, 4
_debug = False
services_app = typer.Typer(
    help="Local Kafka, schema registry and PostgreSQL stores (no Docker).", no_args_is_help=True
)
app.add_typer(services_app, name="services")
app.add_typer(capture_app, name="capture")
app.command("snapshot")(capture_snapshot)
app.add_typer(merge_app, name="merge")
app.add_typer(sink_app, name="sink")
app.add_typer(conflicts_app, name="conflicts")
app.add_typer(quarantine_app, name="quarantine")
app.command("history")(history_command)
app.add_typer(audit_app, name="audit")

console = Console(stderr=True)
log = structlog.get_logger("civsync")

RunDirOption = Annotated[
    Path,
    typer.Option("--run-dir", envvar="CIVSYNC_RUN_DIR", help="Where service data and logs live"),
]


@app.callback()
def configure(
    log_level: Annotated[str, typer.Option(envvar="CIVSYNC_LOG_LEVEL", help="Log level")] = "INFO",
    debug: Annotated[
        bool, typer.Option("--debug", envvar="CIVSYNC_DEBUG", help="Tracebacks for errors")
    ] = False,
) -> None:
    """civsync: change-data-capture sync of civil-status and population data."""
    global _debug  # noqa: PLW0603 - read by main, which runs the app
    _debug = debug
    civsync_logging.configure(log_level)


def exit_code(error: CivsyncError) -> int:
    """The documented exit code of ``error``."""
    if isinstance(error, ConfigError):
        return EXIT_CONFIG
    return EXIT_UNREACHABLE if isinstance(error, RetriableError) else EXIT_REFUSED


def main() -> None:
    """The ``civsync`` command: the app, with errors as one line and a documented code. A
    crash in native code (librdkafka, libpq, RocksDB) prints every thread's Python stack
    before the process dies (faulthandler), so a segmentation fault says where it was."""
    faulthandler.enable()
    try:
        app()
    except CivsyncError as error:
        if _debug:
            raise
        line = " ".join(str(error).split())  # one line, whatever the driver's message holds
        console.print(Text.assemble(("error: ", "red"), line), soft_wrap=True)
        sys.exit(exit_code(error))


def _settings(config: Path | None) -> CivsyncSettings:
    try:
        return load_settings(config)
    except CivsyncError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_CONFIG) from exc


def _services(config: Path | None, run_dir: Path) -> LocalServices:
    return LocalServices(run_dir.resolve(), _settings(config))


@app.command()
def version() -> None:
    """Print civsync's version and the service versions the launcher runs."""
    typer.echo(
        f"civsync {__version__} (Kafka {KAFKA_VERSION}, Apicurio Registry {APICURIO_VERSION})"
    )


@app.command()
def run(
    config: ConfigOption = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="Write each part's log to <log-dir>/<part>.log")
    ] = None,
    mergers: Annotated[
        int, typer.Option(min=1, help="Merger processes: they share the partitions")
    ] = 1,
    metrics_port_base: Annotated[
        int,
        typer.Option(
            min=0,
            max=65000,
            help="Serve each part's /metrics and /healthz on consecutive ports from this one"
            " (capture-civil, capture-population, the mergers, sink-civil, sink-population);"
            " 0: off",
        ),
    ] = 0,
    metrics_host: MetricsHostOption = "127.0.0.1",
) -> None:
    """The whole engine on this machine: both captures, the merger and both sinks, each its
    own process, supervised: a part that exits is restarted (after 1 s, doubling to 30 s),
    logged and counted. SIGTERM or Ctrl-C stops every part cleanly. For scale-out across
    machines, run the parts one by one: capture run, merge run --instance, sink run."""
    _settings(config)  # a bad config stops here, once, not in five processes
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    engine = EngineProcesses(
        config,
        log_dir,
        mergers=mergers,
        metrics_port_base=metrics_port_base,
        metrics_host=metrics_host,
    )
    engine.start()
    log.info("engine started", parts=list(roles(mergers)))
    try:
        engine.supervise(stop)
    finally:
        engine.stop()
        log.info("engine stopped", restarts=dict(engine.restarts))


@app.command()
def status(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
) -> None:
    """The engine at a glance: each part running or not, capture lag, consumer lag, the last
    minute's throughput, held conflicts, waiting people, quarantine. Exit 1 when unhealthy."""
    found = engine_status(_settings(config))
    if as_json:
        typer.echo(json.dumps(found.as_dict(), indent=2))
    else:
        _print_engine(found)
    if not found.healthy:
        raise typer.Exit(1)


def _print_engine(found: Status) -> None:
    parts = Table("part", "running", "lag", "detail")
    for capture in found.captures:
        seconds = "" if capture.lag_s is None else f", {capture.lag_s:.1f} s"
        lag = "-" if capture.lag_bytes is None else f"{capture.lag_bytes:,} B{seconds}"
        detail = f"slot {capture.slot}, WAL {capture.wal_status or '-'}"
        parts.add_row(f"capture-{capture.store}", _mark(capture.running), lag, detail)
    for group in found.groups:
        busiest = sorted(group.lag_by_partition.items(), key=lambda kv: -kv[1])[:3]
        detail = ", ".join(f"{where}: {n:,}" for where, n in busiest) or "caught up"
        row = (group.part, _mark(group.running), f"{group.lag:,} records", detail)
        parts.add_row(*row)
    console.print(parts)
    written = ", ".join(f"{t}: {n:,}" for t, n in found.written_last_minute.items() if n)
    console.print(f"last minute: {written or 'nothing written'}")
    waiting = ", ".join(f"{store}: {n}" for store, n in found.waiting_people.items())
    console.print(f"held conflicts: {found.held_conflicts}; people waiting: {waiting or '-'}")
    quarantined = ", ".join(f"{reason}: {n:,}" for reason, n in found.quarantined.items())
    console.print(f"quarantined: {quarantined or 'none'}")
    for problem in found.problems:
        console.print(f"[red]unhealthy:[/red] {problem}")


@app.command()
def demo(
    people: Annotated[int, typer.Option(min=10, help="People to seed in both stores")] = 10_000,
    mismatch: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Share of people the stores disagree on")
    ] = 0.05,
    edits: Annotated[int, typer.Option(min=0, help="Live edits made while the engine runs")] = 300,
    config: ConfigOption = None,
    run_dir: RunDirOption = Path(".run"),
) -> None:
    """Start everything, seed both stores with mismatches, run the engine, edit live, summarise."""
    runner = Demo(_settings(config), run_dir.resolve(), console, people, mismatch, edits)
    try:
        runner.run()
    except CivsyncError as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        raise typer.Exit(1) from exc


@app.command()
def reconcile(
    out: Annotated[Path, typer.Option(help="Folder for mismatches.csv and .jsonl")] = Path(
        "reconcile"
    ),
    repair: Annotated[
        bool, typer.Option(help="Send the differences through the merger, so policies decide")
    ] = False,
    config: ConfigOption = None,
) -> None:
    """Compare both stores field by field for every person; summarise; write the mismatches."""
    settings = _settings(config)
    with console.status("comparing") as status:
        report = run_reconcile(
            settings,
            out,
            repair=repair,
            progress=lambda r: status.update(
                f"compared {r.people['civil']:,} civil"
                f" and {r.people['population']:,} population rows"
            ),
        )
    table = Table("field", "mismatches", title="civsync reconcile")
    for name, count in report.mismatches.most_common():
        table.add_row(name, f"{count:,}")
    console.print(table)
    console.print(
        f"{report.people['civil']:,} civil and {report.people['population']:,} population rows"
        f" in {report.seconds:.1f}s ({report.rows_per_s:,.0f} rows/s);"
        f" mismatches in {out / 'mismatches.csv'} and {out / 'mismatches.jsonl'}"
    )
    if repair:
        console.print(f"sent {report.repaired_people:,} people's differences to the merger")


@app.command()
def remap(config: ConfigOption = None) -> None:
    """Re-derive the 2025 unit of every stored place; write back what changed."""
    with console.status("remapping places") as status:
        report = run_remap(
            _settings(config), progress=lambda r: status.update(f"{r.read:,} rows read")
        )
    changed = ", ".join(f"{q}: {n:,}" for q, n in report.changed.most_common()) or "none"
    console.print(f"{report.read:,} rows read; places changed, by new quality: {changed}")


@app.command()
def migrate(
    stores: Annotated[
        list[str] | None, typer.Argument(help="civil and/or population (default: both)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create or update the stores' tables (schemas/sql/<store>/); applied files are recorded.
    Then make each engine part's role ready, as `civsync roles` does."""
    settings = _settings(config)
    for store, owner in _chosen(settings, stores).items():
        try:
            with connect(owner) as conn:
                applied = run_migrations(conn, store)
                users = _ensure_roles(conn, settings, store)
        except CivsyncError as exc:
            console.print(f"[red]{store}:[/red] {exc}")
            raise typer.Exit(1) from exc
        done = ", ".join(applied) if applied else "already up to date"
        console.print(f"{store}: {done}; roles {', '.join(users)}")


@app.command("roles")
def roles_command(
    stores: Annotated[
        list[str] | None, typer.Argument(help="civil and/or population (default: both)")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """As the stores' owner: each engine part's login role ([roles]), created or its password
    set again, with exactly its grants (docs/security.md), and capture's publication.
    Idempotent; run it after adding tables or changing a password."""
    settings = _settings(config)
    for store, owner in _chosen(settings, stores).items():
        with connect(owner) as conn:
            users = _ensure_roles(conn, settings, store)
        console.print(f"{store}: roles {', '.join(users)} ready")


@app.command("kafka-users")
def kafka_users_command(config: ConfigOption = None) -> None:
    """As Kafka's administrator ([kafka]: admin over SASL_SSL, or the local broker's
    PLAINTEXT listener): each part's SCRAM user ([kafka_users]), its password set again, and
    exactly its ACLs (docs/security.md). Idempotent; run it after changing a password or
    [merge] topic_prefix or group."""
    settings = _settings(config)
    done = ensure_users(settings.kafka, settings.kafka_users, settings.merge)
    console.print(
        f"kafka: users {', '.join(done.users)} ready;"
        f" ACLs created {done.created}, stale ones deleted {done.deleted}"
    )


def _chosen(settings: CivsyncSettings, stores: list[str] | None) -> dict[str, StoreSettings]:
    """The stores named (default: both), as their owner reaches them."""
    known = settings.stores()
    for store in stores or []:
        if store not in known:
            raise typer.BadParameter(f"unknown store {store!r}; expected one of {sorted(known)}")
    return {name: known[name] for name in stores or known}


def _ensure_roles(conn: Connection, settings: CivsyncSettings, store: str) -> list[str]:
    slot = slot_name(settings, store)
    return ensure_roles(conn, store, settings.roles, settings.merge, [slot])


@services_app.command("up")
def services_up(config: ConfigOption = None, run_dir: RunDirOption = Path(".run")) -> None:
    """Install what is missing, start every service, wait until all are healthy."""
    services = _services(config, run_dir)
    try:
        timings = services.up(progress=lambda msg: console.print(f"[cyan]•[/cyan] {msg}"))
    except CivsyncError as exc:
        console.print(f"[red]services did not come up:[/red] {exc}")
        raise typer.Exit(1) from exc
    console.print(f"[green]all services healthy[/green] in {max(timings.values()):.1f}s")
    _print_status(services)


@services_app.command("down")
def services_down(config: ConfigOption = None, run_dir: RunDirOption = Path(".run")) -> None:
    """Stop every local service; data is kept for the next `up`."""
    _services(config, run_dir).down(progress=lambda msg: console.print(f"[cyan]•[/cyan] {msg}"))


@services_app.command("status")
def services_status(config: ConfigOption = None, run_dir: RunDirOption = Path(".run")) -> None:
    """Show each local service, its endpoint and whether it is healthy. Exit 1 if any is not."""
    if not _print_status(_services(config, run_dir)):
        raise typer.Exit(1)


@services_app.command("env")
def services_env(config: ConfigOption = None, run_dir: RunDirOption = Path(".run")) -> None:
    """Print the CIVSYNC_* variables that reach the local services, for a shell:
    eval "$(civsync services env)". Kafka is its SASL_SSL listener, as admin (the password
    is printed: for your own shell); the stores are their owner."""
    services = _services(config, run_dir)
    kafka = services.kafka().admin_settings(services.settings.kafka)
    registry = services.registry()
    pairs = kafka_env(kafka) | {"CIVSYNC_REGISTRY__URL": str(services.settings.registry.url)}
    if registry.tls:
        pairs["CIVSYNC_REGISTRY__SSL_CA_LOCATION"] = str(registry.ca_file.resolve())
    for name, store in services.settings.stores().items():
        prefix = f"CIVSYNC_{name.upper()}__"
        pairs |= {
            f"{prefix}HOST": store.host,
            f"{prefix}PORT": str(store.port),
            f"{prefix}DBNAME": store.dbname,
            f"{prefix}USER": store.user,
        }
    sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in pairs.items()))


def _print_status(services: LocalServices) -> bool:
    table = Table("service", "endpoint", "running", "healthy")
    states = services.status()
    for state in states:
        table.add_row(state.name, state.endpoint, _mark(state.running), _mark(state.healthy))
    console.print(table)
    return all(state.healthy for state in states)


def _mark(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
