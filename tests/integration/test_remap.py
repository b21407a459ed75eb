"""`civsync remap` on real stores: stale derivations are rewritten, what was recorded is kept,
a steward's choice stands, and a code no list resolves is kept as recorded and marked
`unresolved` for a steward, not quarantined."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from civsync.config import CivsyncSettings
from connectors.postgres import Connection
from connectors.quarantine import QUARANTINE_TOPIC
from connectors.registry import SchemaRegistry
from tests.integration.capture_support import q, read_topic
from tests.integration.merge_support import write_config

PLACES = {
    "person": ("place_of_birth", "hometown", "permanent_residence"),
    "citizen": (
        "place_of_birth",
        "hometown",
        "permanent_residence",
        "temporary_residence",
        "current_residence",
    ),
}


def _place(code: str, code_list: str = "pre-2025", **derived: object) -> str:
    return json.dumps(
        {"text": "as written in the book", "code": code, "code_list": code_list, **derived}
    )


def test_remap_rederives_places_keeps_the_record_and_leaves_unknown_codes_to_a_steward(
    civil: Connection,
    population: Connection,
    tmp_path: Path,
    unique_name: str,
    settings: CivsyncSettings,
    registry: SchemaRegistry,
) -> None:
    config = write_config(tmp_path / "civsync.toml", unique_name)
    for conn, suffix in ((civil, "person"), (population, "citizen")):
        columns = ", ".join(f"{c} jsonb" for c in PLACES[suffix])
        conn.execute(
            q(f"CREATE TABLE {{t}} (pin text PRIMARY KEY, {columns})", f"{unique_name}_{suffix}")
        )
    person = f"{unique_name}_person"
    civil.execute(
        q("INSERT INTO {t} (pin, place_of_birth, hometown) VALUES (%s, %s, %s)", person),
        ("001090000001", _place("00001"), _place("99999")),  # Phúc Xá, never derived; unknown
    )
    civil.execute(
        q("INSERT INTO {t} (pin, place_of_birth) VALUES (%s, %s)", person),
        ("001090000002", _place("00004", current={"ward_code": "x"}, quality="resolved")),
    )
    run = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "remap", "--config", str(config)],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "merged: 1" in run.stderr + run.stdout
    assert "unresolved: 1" in run.stderr + run.stdout
    rows: dict[str, Any] = {
        str(pin): place
        for pin, place in civil.execute(q("SELECT pin, place_of_birth FROM {t}", person))
    }
    hometowns: dict[str, Any] = {
        str(pin): place for pin, place in civil.execute(q("SELECT pin, hometown FROM {t}", person))
    }
    unknown_code = hometowns["001090000001"]
    assert unknown_code["text"] == "as written in the book"  # kept as recorded
    assert (unknown_code["code"], unknown_code["quality"]) == ("99999", "unresolved")
    assert unknown_code["current"] is None
    remapped = rows["001090000001"]
    assert remapped["text"] == "as written in the book"  # recorded: untouched
    assert (remapped["code"], remapped["code_list"]) == ("00001", "pre-2025")
    assert remapped["quality"] == "merged"
    assert remapped["current"]["province_code"] == "01"
    assert rows["001090000002"]["quality"] == "resolved"  # a steward's choice stands
    quarantined = [
        r
        for r in read_topic(settings, registry, QUARANTINE_TOPIC)
        if r["table"] == f"public.{person}"
    ]
    assert quarantined == []
    again = subprocess.run(
        [sys.executable, "-m", "civsync.cli", "remap", "--config", str(config)],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert "places changed, by new quality: none" in again.stderr + again.stdout
