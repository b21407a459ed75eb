"""The whole engine as local processes: capture of both stores, the merger, both sinks.

Each is a ``civsync`` command in its own process, started with the same config file and
environment, logging to ``<log_dir>/<role>.log`` (or to this process's output). ``civsync
run`` and the demo use it. ``supervise`` restarts a part that exits, after a pause that
doubles from 1 s to 30 s (back to 1 s once the part has run a minute), logged and counted;
``stop`` asks every part to stop (SIGTERM: open transactions commit or abort, slots are
confirmed) and kills what has not within the timeout. With ``metrics_port_base``, each part
serves /metrics and /healthz on its own port, consecutive in the order of ``roles``
(``metrics_ports``), the same port across its restarts. Every part is started so that the
kernel stops it if the process that started it dies, even by a crash, so an engine never
outlives its supervisor as orphans.

Each part connects to the stores with its own role (``[roles]``, docs/security.md): before
the parts start, ``start`` makes the roles, their grants and each capture's publication ready
as the stores' owner (``connectors.migrations.ensure_roles``, as ``civsync migrate`` does),
then gives each capture and sink its role's user and password in its environment. The
merger connects to no store. When ``[kafka]`` logs in with SASL (``security_protocol =
"SASL_SSL"``), ``start`` also makes each part's Kafka user and ACLs, as ``civsync
kafka-users`` does, and gives each part its user in its environment.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import structlog

from civsync.capture_cli import slot_name
from civsync.config import CivsyncSettings, load_settings
from connectors.kafka.security import ensure_users
from connectors.migrations import ensure_roles
from connectors.postgres import connect
from connectors.settings import KafkaSettings

log = structlog.get_logger(__name__)
_PR_SET_PDEATHSIG = 1  # prctl(2): the signal a process gets when its parent dies
_FIRST_PAUSE_S, _LONGEST_PAUSE_S, _STEADY_S = 1.0, 30.0, 60.0


def engine_config(
    path: Path, settings: CivsyncSettings, databases: Mapping[str, str], prefix: str
) -> Path:
    """Write a config for an engine of its own: ``settings``' services, the stores'
    ``databases``, topics and consumer groups under ``prefix``, and the merger's state in
    ``state/`` beside the config (an engine's state is deleted with its directory)."""
    lines = []
    for name, store in settings.stores().items():
        lines += [f"[{name}]", f'host = "{store.host}"', f"port = {store.port}"]
        lines += [f'dbname = "{databases[name]}"', f'sslmode = "{store.sslmode}"']
        if store.sslrootcert is not None:
            lines += [f'sslrootcert = "{store.sslrootcert}"']
    kafka = settings.kafka
    lines += [
        "[kafka]",
        f'bootstrap_servers = "{kafka.bootstrap_servers}"',
        f'security_protocol = "{kafka.security_protocol}"',
    ]
    if kafka.logs_in:  # no login: each part's comes in its environment (part_env)
        lines += [f'sasl_mechanism = "{kafka.sasl_mechanism}"']
    if kafka.ssl_ca_location is not None:
        lines += [f'ssl_ca_location = "{kafka.ssl_ca_location.resolve()}"']
    lines += ["[registry]", f'url = "{settings.registry.url}"']
    if settings.registry.ssl_ca_location is not None:
        lines += [f'ssl_ca_location = "{settings.registry.ssl_ca_location.resolve()}"']
    lines += [
        "[merge]",
        f'topic_prefix = "{prefix}"',
        f'group = "{prefix}-merger"',
        f'state_dir = "{path.parent / "state"}"',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


ROLES = ("capture-civil", "capture-population", "merger", "sink-civil", "sink-population")


def roles(mergers: int = 1) -> tuple[str, ...]:
    """The parts of an engine with ``mergers`` merger processes (``merger-<i>`` when more
    than one: they share the partitions, and each takes a core)."""
    if mergers == 1:
        return ROLES
    return (*ROLES[:2], *(f"merger-{i}" for i in range(mergers)), *ROLES[3:])


def metrics_ports(parts: tuple[str, ...], base: int) -> dict[str, int]:
    """The metrics port of each part: ``base``, ``base + 1``, ... in the order of ``parts``
    (none when ``base`` is 0)."""
    return {part: base + n for n, part in enumerate(parts)} if base else {}


def command(role: str, config: Path | None) -> list[str]:
    """The ``civsync`` command line of ``role`` (without a config: ``$CIVSYNC_CONFIG``)."""
    kind, _, what = role.partition("-")
    args = {
        "capture": ["capture", "run", what],
        "merger": ["merge", "run", *(["--instance", what] if what else [])],
        "sink": ["sink", "run", what],
    }[kind]
    return [
        sys.executable,
        "-m",
        "civsync.cli",
        *args,
        *(["--config", str(config)] if config else []),
    ]


def part_env(settings: CivsyncSettings, role: str) -> dict[str, str]:
    """The environment that gives ``role`` its part's own login to the store it connects to
    (``CIVSYNC_<STORE>__USER`` and ``__PASSWORD``; none for the merger) and to Kafka
    (``kafka_part_env``)."""
    kind, _, store = role.partition("-")
    env = kafka_part_env(settings, role)
    part = {"capture": "capture", "sink": f"sink_{store}"}.get(kind)
    if part is None:
        return env
    login = settings.roles.of(part)
    prefix = f"CIVSYNC_{store.upper()}__"
    return env | {
        f"{prefix}USER": login.user,
        f"{prefix}PASSWORD": login.password.get_secret_value(),
    }


def kafka_part_env(settings: CivsyncSettings, role: str) -> dict[str, str]:
    """When ``[kafka]`` logs in with SASL, the environment that logs ``role`` in as its own
    Kafka user (``CIVSYNC_KAFKA__SASL_USERNAME`` and ``__SASL_PASSWORD``, ``[kafka_users]``);
    with PLAINTEXT (local development), none."""
    if not settings.kafka.logs_in:
        return {}
    kind, _, store = role.partition("-")
    user = settings.kafka_users.of("merger" if kind == "merger" else f"{kind}_{store}")
    return {
        "CIVSYNC_KAFKA__SASL_USERNAME": user.user,
        "CIVSYNC_KAFKA__SASL_PASSWORD": user.password.get_secret_value(),
    }


def _stop_with_parent() -> None:
    """In a new part, before it runs: SIGTERM when the process that started it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class EngineProcesses:
    config: Path | None
    log_dir: Path | None = None  # None: the parts write to this process's output
    env: dict[str, str] = field(default_factory=dict)
    extra: dict[str, list[str]] = field(default_factory=dict)  # more arguments, by role
    mergers: int = 1
    metrics_port_base: int = 0  # 0: the parts serve no metrics
    metrics_host: str = "127.0.0.1"
    kafka_admin: KafkaSettings | None = None  # who makes the parts' Kafka users; None: [kafka]
    restarts: Counter[str] = field(default_factory=Counter)
    _running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _started: dict[str, float] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)
    _env: dict[str, dict[str, str]] = field(default_factory=dict)  # by role: its login

    def start(self) -> None:
        settings = load_settings(self.config)
        self.prepare(settings)
        self._env = {role: part_env(settings, role) for role in roles(self.mergers)}
        for role, port in self.metrics_ports().items():
            log.info(
                "part serves metrics", part=role, url=f"http://{self.metrics_host}:{port}/metrics"
            )
        for role in roles(self.mergers):
            self._start(role)

    def prepare(self, settings: CivsyncSettings) -> None:
        """As each store's owner: the parts' roles, their grants, and the publication of the
        slot this engine's capture reads (``--slot`` in ``extra``, or the settings'). With
        SASL, as Kafka's administrator (``kafka_admin``, else ``[kafka]``): the parts' users
        and ACLs."""
        if settings.kafka.logs_in:
            admin = self.kafka_admin or settings.kafka
            ensure_users(admin, settings.kafka_users, settings.merge)
        for store, owner in settings.stores().items():
            args = self.extra.get(f"capture-{store}", [])
            slot = args[args.index("--slot") + 1] if "--slot" in args else None
            with connect(owner) as conn:
                ensure_roles(
                    conn,
                    store,
                    settings.roles,
                    settings.merge,
                    [slot or slot_name(settings, store)],
                )

    def metrics_ports(self) -> dict[str, int]:
        """Each part's /metrics and /healthz port (none without ``metrics_port_base``)."""
        return metrics_ports(roles(self.mergers), self.metrics_port_base)

    def _metrics_args(self, role: str) -> list[str]:
        port = self.metrics_ports().get(role)
        return (
            []
            if port is None
            else ["--metrics-host", self.metrics_host, "--metrics-port", str(port)]
        )

    def _start(self, role: str) -> None:
        output: IO[bytes] | None = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{role}.log").open("ab")
            self._logs.append(output)
        self._running[role] = subprocess.Popen(  # noqa: S603 - our own CLI
            [*command(role, self.config), *self._metrics_args(role), *self.extra.get(role, [])],
            stdout=output,
            stderr=None if output is None else subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self._env.get(role, {}), **self.env},
            preexec_fn=_stop_with_parent,  # noqa: PLW1509 - started from the main thread
        )
        self._started[role] = time.monotonic()

    def pids(self) -> dict[str, int]:
        """The process id of each running part."""
        return {role: process.pid for role, process in self._running.items()}

    def exited(self) -> dict[str, int]:
        """Roles whose process has ended, with the exit code (a running engine has none)."""
        codes = {role: process.poll() for role, process in self._running.items()}
        return {role: code for role, code in codes.items() if code is not None}

    def supervise(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """Restart each part that exits, until ``stop`` is set."""
        due: dict[str, float] = {}  # role -> when it starts again
        quick_exits: Counter[str] = Counter()  # role -> exits in a row within a minute of start
        while not stop.wait(poll_s):
            now = time.monotonic()
            for role, code in self.exited().items():
                if role in due:
                    continue
                quick = 0 if now - self._started[role] >= _STEADY_S else quick_exits[role] + 1
                quick_exits[role] = quick
                pause = min(_FIRST_PAUSE_S * 2.0 ** max(quick - 1, 0), _LONGEST_PAUSE_S)
                self.restarts[role] += 1
                due[role] = now + pause
                log.warning(
                    "part exited; restarting",
                    part=role,
                    exit_code=code,
                    restarts=self.restarts[role],
                    in_s=pause,
                )
            for role, when in list(due.items()):
                if now >= when:
                    del due[role]
                    self._start(role)

    def stop(self, timeout_s: float = 30.0) -> None:
        for process in self._running.values():
            if process.poll() is None:
                process.terminate()
        for process in self._running.values():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._running.clear()
        for output in self._logs:
            output.close()
        self._logs.clear()
