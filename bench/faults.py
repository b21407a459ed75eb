"""The fault suite at any size: for each fault (``tests.faults.harness.FAULTS``), a steady
load through the whole pipeline while a service is killed, stopped or paused, and what it
cost: changes committed and delivered, writes the stores refused while away, duplicates
applied, people disagreeing at the end, how long the service was away (the outage and its
restart), and the time from its return until the backlog was delivered.

The services are the fault suite's own (other ports, ``.run/faults``), started and stopped
here. Run from the repository root: ``python -m bench.faults`` (the sizes of
docs/reliability.md) or ``python -m bench.faults --smoke``; ``--only kafka-kill ...`` picks
faults. Results go to bench/results/faults.json.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.report import summary, write
from tests.faults.disk import NoDiskToFillError
from tests.faults.harness import FAULTS, Size, fault_services, run_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=400.0, help="changes/s, both stores")
    parser.add_argument("--seconds", type=float, default=60.0, help="of load per scenario")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds the service is away")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=[f.name for f in FAULTS])
    parser.add_argument("--smoke", action="store_true", help="small sizes (the tests' own)")
    args = parser.parse_args()
    size = Size() if args.smoke else Size(args.rate, args.seconds, args.outage)
    chosen = [f for f in FAULTS if not args.only or f.name in args.only]
    scenarios: dict[str, Any] = {}
    with fault_services() as services:
        for fault in chosen:
            try:
                runs = [run_scenario(services, fault, size) for _ in range(args.runs)]
            except NoDiskToFillError as why:
                print(f"{fault.name}: not run, no disk to fill on this machine: {why}")
                continue
            print(runs[-1], flush=True)
            scenarios[fault.name] = {
                "what": fault.what,
                **{key: [r[key] for r in runs] for key in _COUNTS},
                **{key: summary([r[key] for r in runs]) for key in ("away_s", "caught_up_s")},
            }
    result = {
        "workload": {
            "changes_per_s": size.rate,
            "seconds": size.seconds,
            "outage_s": size.outage_s,
            "people_per_store": size.people,
            "runs": args.runs,
        },
        "scenarios": scenarios,
    }
    write("faults", result, smoke=args.smoke)


_COUNTS = (
    "changes_offered",
    "changes_delivered",
    "writes_refused",
    "duplicates_applied",
    "disagreeing_people",
)


if __name__ == "__main__":
    main()
