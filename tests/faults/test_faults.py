"""Each fault of ``tests.faults.harness.FAULTS`` at a small size, under a steady load through
the whole pipeline: every change committed in one store reaches the other, nothing is
applied twice, the stores agree, and no civsync process exits. ``python -m bench.faults``
runs the same scenarios at larger sizes and writes their figures (docs/reliability.md)."""

from __future__ import annotations

import pytest

from civsync.services import LocalServices
from tests.faults.disk import NoDiskToFillError
from tests.faults.harness import FAULTS, Fault, Size, run_scenario


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_the_pipeline_rides_out(services: LocalServices, fault: Fault) -> None:
    try:
        report = run_scenario(services, fault, Size())
    except NoDiskToFillError as why:  # a skip, which fails the tests in CI
        pytest.skip(f"no disk to fill on this machine: {why}")
    assert report["changes_offered"] > 0
    assert report["changes_delivered"] == report["changes_offered"], report
    assert report["duplicates_applied"] == 0, report
    assert report["disagreeing_people"] == 0, report
