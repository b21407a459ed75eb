"""Where the CPU goes: seconds of CPU per component while the pipeline syncs a load.

Runs the whole pipeline (both captures, the merger, both sinks) on the local services,
creates N people in each store, waits until every change has arrived in the other store, and
reads each process's CPU time from /proc before and after. Prints µs of CPU per change for
the merger, the sinks, the captures, both PostgreSQL servers, the Kafka broker and the
registry. Run from the repository root: `python -m bench.cpu [--people N]`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.e2e import _load, _settled
from civsync.config import load_settings
from civsync.services import LocalServices
from connectors.postgres import connect
from tests.integration.merge_support import pipeline

ROOT = Path(__file__).resolve().parents[1]
_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_component() -> dict[str, float]:
    """CPU seconds used so far by each component, from /proc."""
    used: dict[str, float] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if "civsync.cli" in command:  # its subcommand: "merge run", "sink run population"
            words = command.split("civsync.cli", 1)[1].split()
            name = " ".join(itertools.takewhile(lambda w: not w.startswith("-"), words))
        elif command.startswith("postgres"):
            name = "postgres"
        elif "ConnectStandalone" in command:
            name = "kafka connect"
        elif "java" in command:
            name = "kafka" if "kafka.Kafka" in command else "registry"
        else:
            continue
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return used


def per_record(before: dict[str, float], after: dict[str, float], records: int) -> dict[str, float]:
    """µs of CPU per record each component used between two ``cpu_by_component`` readings
    (components under 1 µs per record left out)."""
    used = {name: 1e6 * (t - before.get(name, 0.0)) / records for name, t in after.items()}
    return {name: round(us) for name, us in sorted(used.items()) if us >= 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000, help="people per store")
    args = parser.parse_args()
    settings = load_settings()
    LocalServices(ROOT / ".run", settings).up()
    with (
        connect(settings.civil, autocommit=True) as civil,
        connect(settings.population, autocommit=True) as population,
        tempfile.TemporaryDirectory() as tmp,
        pipeline(civil, population, Path(tmp), f"bench_cpu_{uuid.uuid4().hex[:8]}") as run,
    ):
        time.sleep(3)  # let every process finish starting
        before = cpu_by_component()
        _load(run, args.people)
        _, span = _settled(run, "load", 2 * args.people, timeout_s=900)
        after = cpu_by_component()
    changes = 2 * args.people
    print(f"{changes:,} changes in {span:.1f}s: {changes / span:,.0f} changes/s")
    for name in sorted(after, key=lambda n: before.get(n, 0.0) - after[n]):
        seconds = after[name] - before.get(name, 0.0)
        print(f"{seconds:7.1f}s CPU  {1e6 * seconds / changes:6.0f} µs/change  {name}")


if __name__ == "__main__":
    main()
