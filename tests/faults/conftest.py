"""The fault suite's own services (``tests.faults.harness.fault_services``): started for the
fault tests, stopped after them, so the tests that follow find the environment as it was. A
service that does not come up fails the tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from civsync.services import LocalServices
from tests.faults.harness import fault_services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="module")  # stopped, and the environment given back, after the module
def services() -> Iterator[LocalServices]:
    with fault_services() as started:
        yield started
