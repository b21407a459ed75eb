"""Background processes the launcher owns: start detached, find again by pid file, stop.

A process is *ours* only if its pid file names a live process whose command line still
contains the marker we started it with, so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.errors import FatalError


class LauncherError(FatalError):
    """A local service could not be installed, started or stopped."""


@dataclass(frozen=True)
class ManagedProcess:
    """A long-running service process identified by its pid file and a command-line marker."""

    name: str
    pid_file: Path
    log_file: Path
    marker: str

    def pid(self) -> int | None:
        """The pid of our live process, or None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if not cmdline:  # just spawned, its exec under way; or a zombie
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                return None if state == "Z" else pid
        except (FileNotFoundError, ValueError):
            return None
        return pid if self.marker.encode() in cmdline else None

    def start(self, argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
        """Start ``argv`` detached from this session, output appended to the log file."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            # posix_spawn, not Popen: the service outlives this process, and a Popen dropped
            # while its child runs warns (ResourceWarning) when it is garbage-collected.
            pid = os.posix_spawnp(
                argv[0],
                list(argv),
                {**os.environ, **(env or {})},
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                ],
                setsid=True,
            )
        self.pid_file.write_text(f"{pid}\n")
        return pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. True if a process was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        if not _wait(lambda: self.pid() is None, timeout_s):
            os.kill(pid, signal.SIGKILL)
            _wait(lambda: self.pid() is None, 5.0)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the log, to explain a failed start."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"

    def wait_healthy(self, probe: Callable[[], bool], timeout_s: float) -> float:
        """Wait until ``probe`` is true; seconds waited. Raise with the log tail on timeout."""
        started = time.monotonic()
        if _wait(lambda: self._alive_or_raise() and probe(), timeout_s):
            return time.monotonic() - started
        raise LauncherError(
            f"{self.name} did not become healthy within {timeout_s:.0f}s; "
            f"last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def _alive_or_raise(self) -> bool:
        if self.pid() is None:
            raise LauncherError(
                f"{self.name} exited during start-up; last lines of {self.log_file}:\n"
                f"{self.log_tail()}"
            )
        return True


def _wait(condition: Callable[[], bool], timeout_s: float, pause_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause_s)


def run_checked(argv: Sequence[str], *, what: str, env: Mapping[str, str] | None = None) -> str:
    """Run a short command; on failure raise with its output so the operator sees why."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip()[-4000:]
        raise LauncherError(f"{what} failed (exit {result.returncode}):\n{output}")
    return result.stdout


def require_free_port(name: str, host: str, port: int) -> None:
    """LauncherError if something we did not start already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((host, port)) == 0:
            raise LauncherError(
                f"port {port} on {host} is taken by a process the launcher did not start, so "
                f"{name} cannot listen there; stop that process or point civsync elsewhere "
                "(CIVSYNC_* settings)"
            )
