"""`civsync demo`, small: it must run end to end on the real services and say what happened,
with no conflict from values that are equal (tone marks, look-alike letters, code lists, less
precise dates), and the re-issued PINs applied as one person each."""

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
    for line in ("people in agreement on every shared field", "quarantined, by reason"):
        assert line in output
    seeded = re.search(r"equal values seeded in two forms\s*│\s*([^│]*?)\s*│", output)
    assert seeded is not None
    assert "code list" in seeded[1]
    assert "less precise birth date" in seeded[1]
    for cause in (
        "tone marks, look-alike letters or spaces",
        "dates of different precision",
        "one place in two code lists",
    ):
        assert re.search(rf"│ {cause}: 0\s", output), cause
    assert re.search(r"real disagreement / full_name / held: [1-9]", output)  # the live edits
    reissued = re.search(
        r"PINs re-issued: one person under the new PIN\s*│\s*(\d+) of (\d+)", output
    )
    assert reissued is not None
    assert reissued[1] == reissued[2]
    assert re.search(r"capture lag \(bytes of WAL\)\s*│\s*civil: 0, population: 0", output)
