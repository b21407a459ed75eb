"""Merger state in RocksDB: 10 million people within 1 GB of RSS?

Fills ``connectors.merge.state_store`` over 12 partitions with N people, in batches of 2,000
people as the merger's transactions commit them (each batch split by partition, one ``write``
per partition), then reads N/10 random people back with ``get``, one at a time, and decodes
each as the merger does on a cache miss, keeping the last ``cache_people`` (the merger's
default, 5,000) decoded, as its cache does. Person keys are PIN-shaped, scattered over the
key space, and partitioned as the merger does (``person_partition``).

Each value is a real changelog record (registry framing, Avro ``PersonState``, compiled
encoder): one of 1,000 people of bench.apply_path's 16-column row, each merged from a
snapshot read and an update (so every field holds an edit and a learned value), encoded
once and stored under many keys (encoding 10 million states would take longer than the
rest of the benchmark).

Reported: people, value bytes per person, fill rate (people/s, time spent in ``write``), get
and decode µs (median, min, max, p99), RSS (before opening the store, after the fill, and
the process' peak from getrusage and /proc/self/status VmHWM), disk size after closing.
Results go to bench/results/merger_state.json. The store lives in a temporary directory
(under $TMPDIR), removed at the end.

Run from the repository root: ``python -m bench.merger_state [--people N] [--smoke]``.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import resource
import tempfile
import time
from array import array
from collections import OrderedDict
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader

from bench.apply_path import merged_people
from bench.report import summary, write
from connectors.kafka.avro_encoder import compile_encoder
from connectors.merge.records import state_from_avro, state_to_avro
from connectors.merge.state_store import CACHE_BYTES, WRITE_BUFFER_BYTES, MiB, StateStore
from engine.mapping import person_partition
from engine.person import MergedPerson
from schemas import load

PARTITIONS = 12
BATCH = 2_000  # people per merger transaction
PIN_SPACE = 10**12
TEMPLATES = 1_000
CACHE_PEOPLE = 5_000  # connectors.merge.settings: cache_people
_HEADER = b"\x00\x00\x00\x00\x01"  # registry framing: magic byte, schema id
_STATE = parse_schema(json.loads(load("person_state")))


def states() -> list[bytes]:
    """Changelog records of ``TEMPLATES`` people, as the merger writes them."""
    encode = compile_encoder(load("person_state"))
    assert encode is not None, "the state schema compiles"  # noqa: S101
    return [_HEADER + encode(state_to_avro(p)) for p in merged_people(TEMPLATES)]


def decode(payload: bytes) -> MergedPerson:
    """The merger's decoding of a stored state (AvroDecoder without the registry lookup)."""
    return state_from_avro(schemaless_reader(io.BytesIO(payload[5:]), _STATE, None))  # type: ignore[arg-type]


def pin(n: int) -> str:
    """The n-th person's key: a 12-digit PIN; multiplying by a number prime to 10 scatters
    consecutive people over the key space (insertion in key order would flatter RocksDB)."""
    return f"{n * 2_654_435_761 % PIN_SPACE:012d}"


def vm_mb(field: str) -> float:
    """A ``Vm*`` line of /proc/self/status, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fill(store: StateStore, people: int, values: list[bytes]) -> tuple[float, int]:
    """Seconds spent in ``write``, and value bytes written."""
    offsets = [0] * PARTITIONS
    seconds, value_bytes = 0.0, 0
    for first in range(0, people, BATCH):
        batch: list[dict[str, bytes | None]] = [{} for _ in range(PARTITIONS)]
        for n in range(first, min(first + BATCH, people)):
            key = pin(n)
            value = values[n % len(values)]
            batch[person_partition(key, PARTITIONS)][key] = value
            value_bytes += len(value)
        started = time.perf_counter()
        for partition, items in enumerate(batch):
            offsets[partition] += len(items)
            store.partition(partition).write(items, offsets[partition])
        seconds += time.perf_counter() - started
    return seconds, value_bytes


def gets(
    store: StateStore, people: int, count: int, rng: random.Random
) -> tuple[array[int], array[int]]:
    """ns per ``get`` and per decode of ``count`` random stored people; the last
    ``CACHE_PEOPLE`` decoded are kept, as the merger's cache keeps them."""
    partitions = [store.partition(p) for p in range(PARTITIONS)]
    got, decoded = array("Q"), array("Q")
    cache: OrderedDict[str, MergedPerson] = OrderedDict()
    for _ in range(count):
        key = pin(rng.randrange(people))
        partition = partitions[person_partition(key, PARTITIONS)]
        started = time.perf_counter_ns()
        value = partition.get(key)
        got.append(time.perf_counter_ns() - started)
        if value is None:
            raise SystemExit(f"person {key} was stored but is not found")
        started = time.perf_counter_ns()
        cache[key] = decode(value)
        decoded.append(time.perf_counter_ns() - started)
        if len(cache) > CACHE_PEOPLE:
            cache.popitem(last=False)
    return got, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=10_000_000)
    parser.add_argument("--smoke", action="store_true", help="20,000 people (for CI)")
    args = parser.parse_args()
    people = 20_000 if args.smoke else args.people
    rng = random.Random(7)  # noqa: S311 - reproducible bench data
    values = states()
    baseline_mb = vm_mb("VmRSS")
    with tempfile.TemporaryDirectory(prefix="civsync-merger-state-") as directory:
        store = StateStore(Path(directory))
        for partition in range(PARTITIONS):
            store.open(partition)
        started = time.perf_counter()
        write_s, value_bytes = fill(store, people, values)
        fill_wall_s = time.perf_counter() - started
        after_fill_mb = vm_mb("VmRSS")
        print(f"filled {people:,} people in {fill_wall_s:.0f} s", flush=True)
        timings, decodings = gets(store, people, max(people // 10, 1), rng)
        count = store.count()
        peak = {
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "vmhwm": vm_mb("VmHWM"),
        }
        store.close_all()
        disk = sum(f.stat().st_size for f in Path(directory).rglob("*") if f.is_file())
    micros = sorted(ns / 1000 for ns in timings)
    decode_micros = sorted(ns / 1000 for ns in decodings)
    result: dict[str, Any] = {
        "workload": {
            "people": people,
            "partitions": PARTITIONS,
            "people_per_batch": BATCH,
            "value_bytes_per_person": value_bytes / people,
            "value": f"real PersonState records, {TEMPLATES} distinct (16 fields each)",
            "cache_people": CACHE_PEOPLE,
            "gets": len(micros),
        },
        "store": {
            "cache_mb": CACHE_BYTES / MiB,
            "write_buffer_mb": WRITE_BUFFER_BYTES / MiB,
            "count_estimate": count,
        },
        "fill": {"people_per_s": people / write_s, "write_s": write_s, "wall_s": fill_wall_s},
        "get_us": summary(micros) | {"p99": micros[int(0.99 * (len(micros) - 1))]},
        "decode_us": summary(decode_micros),
        "rss_mb": {"baseline": baseline_mb, "after_fill": after_fill_mb, "peak": peak},
        "disk": {"mb": disk / MiB, "bytes_per_person": disk / people},
    }
    write("merger_state", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
