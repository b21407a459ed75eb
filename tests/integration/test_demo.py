"""`civsync demo`, small: it must run end to end on the real services and say what happened."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.integration.conftest import RUN_DIR


def test_the_demo_runs_end_to_end_and_summarises(settings: object) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "demo", "--people", "300", "--edits", "30"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", "CIVSYNC_RUN_DIR": str(RUN_DIR)},
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "people in both stores" in output
    # every seeded person, and the 30 newborns whose PINs the population store issued
    assert re.search(r"people in both stores\s*│\s*330\s", output)
    assert re.search(r"people in agreement on every shared field\s*│\s*330\s", output)
    assert re.search(r"disagreements left, by field\s*│\s*none\s", output)
    assert re.search(r"births without a PIN: PIN issued and written back\s*│\s*30 of 30", output)
    for line in ("people in agreement on every shared field", "conflicts by field", "quarantined"):
        assert line in output
    assert re.search(r"capture lag \(bytes of WAL\)\s*│\s*civil: 0, population: 0", output)
