"""Errors a user meets print one line and exit with a documented code; ``--debug`` shows the
traceback. The CLI runs as a process, against stores that cannot be reached (no services)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from civsync.cli import EXIT_CONFIG, EXIT_REFUSED, EXIT_UNREACHABLE, exit_code
from connectors.capture.slot import SlotLostError
from connectors.postgres import StoreUnavailableError
from engine.errors import CivsyncError, ConfigError

NOWHERE = {"CIVSYNC_CIVIL__PORT": "1", "CIVSYNC_POPULATION__PORT": "1"}  # nothing listens


def _civsync(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "civsync.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "80", **env},
        timeout=60,
    )


def test_a_store_that_cannot_be_reached_is_one_line_and_exit_3() -> None:
    done = _civsync("capture", "status", env=NOWHERE)
    assert done.returncode == EXIT_UNREACHABLE == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: connecting to civil at 127.0.0.1:1")
    assert "Connection refused" in lines[0]
    assert "Traceback" not in done.stderr


def test_a_bad_setting_is_one_line_and_exit_2() -> None:
    done = _civsync("capture", "status", env={"CIVSYNC_CIVIL__PORT": "not-a-port"})
    assert done.returncode == EXIT_CONFIG == 2
    assert done.stderr.strip().splitlines() == [
        "error: invalid civsync settings (CIVSYNC_* environment): civil.port: Input should be"
        " a valid integer, unable to parse string as an integer"
    ]


def test_debug_shows_the_traceback() -> None:
    done = _civsync("--debug", "capture", "status", env=NOWHERE)
    assert "Traceback" in done.stderr
    assert "StoreUnavailableError" in done.stderr


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad"), 2),
        (StoreUnavailableError("away"), 3),
        (SlotLostError("lost"), 4),
    ],
)
def test_each_kind_of_error_has_its_documented_code(error: CivsyncError, code: int) -> None:
    assert exit_code(error) == code
    assert (EXIT_CONFIG, EXIT_UNREACHABLE, EXIT_REFUSED) == (2, 3, 4)  # docs/operations.md


def test_a_crash_in_native_code_prints_where_it_was() -> None:
    """A segmentation fault (as in librdkafka or libpq) in a civsync process prints the
    Python stack of every thread (faulthandler, on in ``main``) before the process dies."""
    crash = (
        "import ctypes, sys\n"
        "from civsync.cli import main\n"
        "sys.argv = ['civsync', 'version']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "ctypes.string_at(0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", crash], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode < 0  # killed by the signal
    assert "Fatal Python error: Segmentation fault" in done.stderr
    assert "File" in done.stderr  # the stack
