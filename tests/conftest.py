"""Test-suite rules shared by both rooms (tests/unit and tests/integration).

In CI (``CI`` set), a skipped test fails the run: a missing service must never pass silently.
Hypothesis keeps every property check but no wall-clock one (slow input generation, slow
examples): these machines are shared and noisy, and time is measured by benchmarks only.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("civsync", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("civsync")

_skipped: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CI") and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get("CI") and _skipped:
        terminalreporter.section("skips are failures in CI")
        for nodeid in _skipped:
            terminalreporter.write_line(f"SKIPPED (counted as a failure): {nodeid}")
