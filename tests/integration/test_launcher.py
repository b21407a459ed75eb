"""The local launcher: idempotent start, and a status command that tells the truth."""

from __future__ import annotations

import subprocess
import sys

import pytest

from civsync.config import CivsyncSettings
from civsync.services import LocalServices
from tests.integration.conftest import RUN_DIR


@pytest.fixture
def local(settings: CivsyncSettings, services_mode: str) -> LocalServices:
    if services_mode != "local":
        pytest.skip(f"services come from {services_mode}, not from the local launcher")
    return LocalServices(RUN_DIR, settings)


def test_up_again_starts_nothing_new(local: LocalServices) -> None:
    pids_before = (local.kafka().process.pid(), local.registry().process.pid())
    assert None not in pids_before

    local.up()

    assert (local.kafka().process.pid(), local.registry().process.pid()) == pids_before
    assert all(state.healthy for state in local.status())


def test_status_command_lists_every_service_as_healthy(local: LocalServices) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "civsync.cli",
            "services",
            "status",
            "--run-dir",
            str(local.run_dir),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for name in ("kafka", "registry", "civil", "population"):
        assert name in result.stderr
