"""Build ``connectors/data/province_population_2009.json``: the population of each of the 63
pre-2025 provinces, as the R package censusVN2009 gives it, by civsync's province code.

Run offline, once, when the source changes (needs PyPI ``rdata``, which civsync does not
depend on; ``pip install rdata`` for the build)::

    git -C censusVN2009 show HEAD:data/communes.rda > communes.rda
    python -m connectors.place_population --from communes.rda

The source is ``data/communes.rda`` of censusVN2009 (github.com/choisy/censusVN2009, MIT
licence, copyright 2017 Marc Choisy): an R ``SpatialPolygonsDataFrame`` of the 11,163
communes of the 2008 boundaries (63 provinces, Hà Tây merged into Hà Nội), whose data frame
(the ``data`` slot) carries each commune's population, given as that of the 2009 census. Only
that data frame is read (``province_vn``, its names as ``\\uXXXX`` escapes, and
``population``); the polygons are not used. The populations are summed per province, as the
package's own ``provinces`` object does, and each sum rounded to a whole number: three
communes carry a fractional figure (Phường 9, Đà Lạt: 12.45; Phường 6, Bình Thạnh: 10.55;
Thắng Nhất, Vũng Tàu: 20.745), kept as given. The figures sum to 77,501,046, well below the
85,846,997 the 2009 census counted (docs/stores.md, "Generated people"); they are written as
the package has them, never corrected by hand.

Each province is matched to the pre-2025 province of ``vietnamadminunits``
(``connectors.place_data.pre_2025_provinces``) by its name without type, accents or case
(``connectors.place_history.key``); Thừa Thiên Huế, a city since 1 January 2025 on the same
land, is listed there as Huế (``RENAMED``). A province that matches no code or more than one,
or a code that no province matches, stops the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from connectors.place_data import pre_2025_provinces
from connectors.place_history import key

DATA_FILE = Path(__file__).parent / "data" / "province_population_2009.json"
FORMAT = 1
PROVINCES = 63
SOURCE = {
    "package": "censusVN2009",
    "repository": "https://github.com/choisy/censusVN2009",
    "file": "data/communes.rda",
    "census_year": 2009,
    "boundaries": 2008,
    "licence": "MIT",
    "copyright_holder": "Marc Choisy",
    "copyright_year": 2017,
}
# Names censusVN2009 gives that vietnamadminunits gives otherwise: the same province.
RENAMED = {"Thừa Thiên Huế": "Huế"}  # a centrally governed city from 1 January 2025
_TYPES = ("tinh", "thanhpho")  # "Tỉnh ", "Thành phố " before a province's name, keyed


class MatchError(ValueError):
    """A province of the source that matches no pre-2025 province code, or more than one."""


def read_communes(path: Path) -> list[tuple[str, float]]:
    """Each commune of the ``.rda`` file's ``communes`` object: its province's name (NFC) and
    its population, from the data frame in the object's ``data`` slot."""
    import rdata  # type: ignore[import-not-found, unused-ignore]  # noqa: PLC0415 - build only

    parsed = rdata.parser.parse_file(path)
    top = parsed.object  # a pairlist: the object's name, then the object
    name = top.tag.value.value if top.tag is not None else None
    if name != b"communes":
        raise MatchError(f"{path}: expected the object 'communes', found {name!r}")
    slots = top.value[0].attributes
    while slots is not None and _tag(slots) != b"data":
        slots = slots.value[1] if len(slots.value) > 1 else None
    if slots is None:
        raise MatchError(f"{path}: the object 'communes' has no 'data' slot")
    frame = rdata.conversion.SimpleConverter().convert(slots.value[0])
    names = [_unescape(str(n)) for n in frame["province_vn"].tolist()]
    populations = [float(p) for p in frame["population"].tolist()]
    if any(math.isnan(p) for p in populations):
        raise MatchError(f"{path}: a commune has no population")
    return list(zip(names, populations, strict=True))


def _tag(pairlist: Any) -> bytes | None:
    tag = pairlist.tag
    if tag is not None and tag.referenced_object is not None:
        tag = tag.referenced_object
    return None if tag is None else bytes(tag.value.value)


def _unescape(name: str) -> str:
    r"""``H\u00e0 N\u1ed9i`` (the package's escapes, ``stringi::stri_escape_unicode``) as text."""
    return unicodedata.normalize("NFC", name.encode("ascii").decode("unicode_escape"))


def province_key(name: str) -> str:
    """A province name compared without type, accents or case: ``Tỉnh Bắc Kạn`` -> ``backan``."""
    keyed = key(name)
    for prefix in _TYPES:
        if keyed.startswith(prefix) and len(keyed) > len(prefix):
            return keyed.removeprefix(prefix)
    return keyed


def match(names: Iterable[str], provinces: Mapping[str, str]) -> dict[str, str]:
    """The pre-2025 province code of each source name: the one code of ``provinces`` (code ->
    name) whose name is the same without type, accents or case. Raises ``MatchError`` for a
    name that matches none or several, or when a code is matched by no name or by several."""
    by_key: dict[str, list[str]] = {}
    for code, name in provinces.items():
        by_key.setdefault(province_key(name), []).append(code)
    codes, problems = {}, []
    for name in names:
        found = by_key.get(province_key(RENAMED.get(name, name)), [])
        if len(found) == 1:
            codes[name] = found[0]
        else:
            problems.append(f"{name!r} matches {len(found)} pre-2025 provinces {sorted(found)}")
    taken: dict[str, list[str]] = {}
    for name, code in codes.items():
        taken.setdefault(code, []).append(name)
    problems += [f"{c} ({provinces[c]}) is matched by {taken.get(c, [])}" for c in sorted(provinces)
                 if len(taken.get(c, [])) != 1]  # fmt: skip
    if problems:
        raise MatchError("province names do not match one to one: " + "; ".join(problems))
    return codes


def document(
    sums: Mapping[str, float], communes: int, blob: str, provinces: Mapping[str, str]
) -> dict[str, Any]:
    """The vendored document from the population summed per source province name."""
    codes = match(sums, provinces)
    rows = {
        code: {"name": provinces[code], "source_name": name, "population": round(sums[name])}
        for name, code in sorted(codes.items(), key=lambda item: item[1])
    }
    return {
        "format": FORMAT,
        "about": (
            "Population of each pre-2025 province, by its code, summed from the communes of"
            " censusVN2009 (2008 boundaries, populations given as the 2009 census's). Built by"
            " connectors/place_population.py; see docs/stores.md, Generated people."
        ),
        "source": {**SOURCE, "git_blob": blob, "communes": communes},
        "total": sum(row["population"] for row in rows.values()),
        "provinces": rows,
    }


def build(path: Path) -> dict[str, Any]:
    """The document built from censusVN2009's ``communes.rda`` at ``path``."""
    communes = read_communes(path)
    by_province: dict[str, list[float]] = {}
    for name, population in communes:
        by_province.setdefault(name, []).append(population)
    if len(by_province) != PROVINCES:
        raise MatchError(f"{path}: {len(by_province)} provinces, not {PROVINCES}")
    sums = {name: math.fsum(values) for name, values in by_province.items()}
    raw = path.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw, usedforsecurity=False).hexdigest()
    return document(sums, len(communes), blob, pre_2025_provinces())


def dump(document: Mapping[str, Any]) -> str:
    """The document as JSON text: one province a line, so that a diff shows a change."""
    head = {k: v for k, v in document.items() if k != "provinces"}
    text = json.dumps(head, ensure_ascii=False, indent=1)[:-2]
    rows = ",\n  ".join(
        f"{json.dumps(code)}: {json.dumps(row, ensure_ascii=False)}"
        for code, row in document["provinces"].items()
    )
    return f'{text},\n "provinces": {{\n  {rows}\n }}\n}}\n'


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.place_population", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        help="censusVN2009's data/communes.rda",
    )
    parser.add_argument("--out", type=Path, default=DATA_FILE, help=f"default {DATA_FILE}")
    args = parser.parse_args(argv)
    built = build(args.source)
    args.out.write_text(dump(built), encoding="utf-8")
    print(
        f"{args.out}: {len(built['provinces'])} provinces, {built['source']['communes']}"
        f" communes, total population {built['total']:,}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
