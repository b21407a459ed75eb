"""The whole engine as local processes: capture of both stores, the merger, both sinks.

Each is a ``civsync`` command in its own process, started with the same config file and
environment, logging to ``<log_dir>/<role>.log``. For the demo and for trying civsync on one
machine; a deployment runs the same commands under its own supervisor.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from civsync.config import CivsyncSettings


def engine_config(
    path: Path, settings: CivsyncSettings, databases: Mapping[str, str], prefix: str
) -> Path:
    """Write a config for an engine of its own: ``settings``' services, the stores'
    ``databases``, topics and consumer groups under ``prefix``, and the merger's state in
    ``state/`` beside the config (an engine's state is deleted with its directory)."""
    lines = []
    for name, store in settings.stores().items():
        lines += [f"[{name}]", f'host = "{store.host}"', f"port = {store.port}"]
        lines += [f'dbname = "{databases[name]}"']
    lines += [
        "[kafka]",
        f'bootstrap_servers = "{settings.kafka.bootstrap_servers}"',
        "[registry]",
        f'url = "{settings.registry.url}"',
        "[merge]",
        f'topic_prefix = "{prefix}"',
        f'group = "{prefix}-merger"',
        f'state_dir = "{path.parent / "state"}"',
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


ROLES = ("capture-civil", "capture-population", "merger", "sink-civil", "sink-population")


def command(role: str, config: Path) -> list[str]:
    """The ``civsync`` command line of ``role``."""
    kind, _, store = role.partition("-")
    args = {
        "capture": ["capture", "run", store],
        "merger": ["merge", "run"],
        "sink": ["sink", "run", store],
    }[kind]
    return [sys.executable, "-m", "civsync.cli", *args, "--config", str(config)]


@dataclass
class EngineProcesses:
    config: Path
    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    extra: dict[str, list[str]] = field(default_factory=dict)  # more arguments, by role
    _running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        for role in ROLES:
            log = (self.log_dir / f"{role}.log").open("wb")
            self._logs.append(log)
            self._running[role] = subprocess.Popen(  # noqa: S603 - our own CLI
                [*command(role, self.config), *self.extra.get(role, [])],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
            )

    def exited(self) -> dict[str, int]:
        """Roles whose process has ended, with the exit code (a running engine has none)."""
        codes = {role: process.poll() for role, process in self._running.items()}
        return {role: code for role, code in codes.items() if code is not None}

    def stop(self, timeout_s: float = 30.0) -> None:
        for process in self._running.values():
            process.terminate()
        for process in self._running.values():
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
        self._running.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
