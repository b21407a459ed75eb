"""Encoding a change event: fastavro's schemaless writer against the compiled encoder.

Capture encodes every change event of a table with the table's envelope schema; this times
that step alone, in one process, for N events of a 15-column table shaped like civsync's civil
``person`` (bigint id, text, date, jsonb places, numeric(12,2), timestamptz): half snapshot
reads (no ``before``), half updates carrying the old row, built by capture's own
``TableTopic.record``. Each is encoded behind the registry's 5-byte header, as
``connectors.kafka.avro`` does: with fastavro (``schemaless_writer`` into a BytesIO, the
fallback) and with ``connectors.kafka.avro_encoder.compile_encoder`` (what capture uses).
The two must give the same bytes for every event; the figures are µs per event, medians of
--runs runs with min and max, in bench/results/encode.json.

Run from the repository root: ``python -m bench.encode [--rows N] [--runs R] [--smoke]``.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import time
from collections.abc import Callable, Mapping
from typing import Any

from fastavro import parse_schema, schemaless_writer

from bench.report import summary, write
from connectors.capture.publisher import TableTopic
from connectors.kafka.avro_encoder import compile_encoder
from engine.events import ChangeEvent, Hlc, Op, Source, Value

HEADER = struct.pack(">bI", 0, 1234)  # magic byte, schema id: as _RegisteredWriter frames
COLUMNS = {
    "id": "bigint",
    "pin": "text",
    "full_name": "text",
    "birth_date": "date",
    "sex": "text",
    "place_of_birth": "jsonb",
    "hometown": "jsonb",
    "ethnicity": "text",
    "father": "text",
    "mother": "text",
    "marital_status": "text",
    "spouse": "text",
    "permanent_residence": "jsonb",
    "allowance": "numeric(12,2)",
    "updated_at": "timestamp with time zone",
}


def _row(n: int, name: str) -> dict[str, Value]:
    place = json.dumps({"text": f"Phường {n % 97}, Hà Nội", "code": f"{n % 30000:05d}"})
    return {
        "id": n,
        "pin": f"001080{n:06d}",
        "full_name": name,
        "birth_date": f"19{n % 100:02d}-{n % 12 + 1:02d}-{n % 28 + 1:02d}",
        "sex": ("male", "female")[n % 2],
        "place_of_birth": place,
        "hometown": place,
        "ethnicity": "Kinh",
        "father": f"Nguyễn Văn {n}",
        "mother": f"Trần Thị {n}",
        "marital_status": "married" if n % 3 else "single",
        "spouse": None if n % 3 == 0 else f"001180{n:06d}",
        "permanent_residence": None if n % 5 == 0 else place,
        "allowance": f"{n % 100000}.{n % 100:02d}",
        "updated_at": f"2026-11-23 17:{n % 60:02d}:{n % 60:02d}.{n % 1000:03d}+07",
    }


def _event(n: int) -> ChangeEvent:
    update = n % 2 == 1
    after = _row(n, f"Nguyễn Văn Hùng {n}" + (" (đã sửa)" if update else ""))
    commit = 1_795_454_565_076 + n
    return ChangeEvent(
        event_id=f"civil:{n:016X}:{n % 7}",
        op=Op.UPDATE if update else Op.READ,
        source=Source("civil", "civil", "public", "person", 2**36 + n, 2**36 + n, n, commit),
        key={"id": n},
        before=_row(n, f"Nguyễn Văn Hùng {n}") if update else None,
        after=after,
        column_types=COLUMNS,
        hlc=Hlc(commit, n % 5, "civil"),
        unavailable=("permanent_residence",) if n % 11 == 0 else (),
    )


def envelopes(rows: int) -> tuple[str, list[dict[str, Any]]]:
    """The person table's envelope schema (JSON text) and ``rows`` envelopes of it."""
    events = [_event(n) for n in range(rows)]
    table = TableTopic.of("civsync.civil.person", events[0])
    records = [table.record(e, e.source.commit_ts_ms + 5, "civsync") for e in events]
    return table.topic.value_schema, records


def with_fastavro(schema: str) -> Callable[[Mapping[str, Any]], bytes]:
    """connectors.kafka.avro's encoding as it is: the header, then fastavro's writer."""
    parsed = parse_schema(json.loads(schema))

    def encode(record: Mapping[str, Any]) -> bytes:
        out = io.BytesIO()
        out.write(HEADER)
        schemaless_writer(out, parsed, record)
        return out.getvalue()

    return encode


def with_compiled(schema: str) -> Callable[[Mapping[str, Any]], bytes]:
    compiled = compile_encoder(schema)
    if compiled is None:
        raise SystemExit("the envelope schema did not compile")

    def encode(record: Mapping[str, Any]) -> bytes:
        return HEADER + compiled(record)

    return encode


def one_run(encode: Callable[[Mapping[str, Any]], bytes], records: list[dict[str, Any]]) -> float:
    """µs per record."""
    started = time.perf_counter()
    for record in records:
        encode(record)
    return 1e6 * (time.perf_counter() - started) / len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="small sizes, one run (for CI)")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.runs = 500, 1
    schema, records = envelopes(args.rows)
    started = time.perf_counter()
    encoders = {"fastavro": with_fastavro(schema), "compiled": with_compiled(schema)}
    compile_ms = 1e3 * (time.perf_counter() - started)
    expected = [encoders["fastavro"](record) for record in records]
    mismatches = sum(encoders["compiled"](r) != e for r, e in zip(records, expected, strict=True))
    if mismatches:
        raise SystemExit(f"{mismatches} of {len(records)} records encode differently")
    runs: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(args.runs):  # interleaved, so that both see the same machine
        for name, encode in encoders.items():
            runs[name].append(one_run(encode, records))
    result: dict[str, Any] = {
        "workload": {
            "rows": args.rows,
            "runs": args.runs,
            "columns": len(COLUMNS),
            "bytes_per_record": sum(map(len, expected)) / len(expected),
            "identical_bytes": True,
        },
        "us_per_record": {name: summary(values) for name, values in runs.items()},
        "speedup_of_medians": summary(runs["fastavro"])["median"]
        / summary(runs["compiled"])["median"],
        "setup_ms_parse_and_compile": compile_ms,
    }
    write("encode", result, smoke=args.smoke)


if __name__ == "__main__":
    main()
