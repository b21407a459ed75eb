"""Deriving the 2025 unit of a place by code, from the published vietnamadminunits data."""

from __future__ import annotations

from collections import Counter

import pytest

from connectors.place_data import place_map
from engine.places import CodeList, Place, Quality, UnknownPlaceCode

MAP = place_map()


def _old(code: str, text: str = "as recorded") -> Place:
    return Place(text, CodeList.PRE_2025, ward_code=code)


def test_the_data_has_every_unit_of_both_lists() -> None:
    assert len(MAP.pre_2025) == 10_040  # 10,035 wards and 5 island districts without wards
    assert len(MAP.current) == 3_321
    assert len({u.province_code for u in MAP.current.values()}) == 34


def test_every_pre_2025_unit_derives_a_current_one_and_the_counts_add_up() -> None:
    qualities = Counter(MAP.derive(_old(code)).quality for code in MAP.pre_2025)
    assert sum(qualities.values()) == 10_040
    assert qualities[Quality.SPLIT_DEFAULT] > 0
    assert qualities[Quality.MERGED] > qualities[Quality.UNCHANGED] > 0


def test_a_merged_ward_maps_to_its_new_ward_and_keeps_what_was_recorded() -> None:
    place = MAP.derive(_old("00001", "Phường Phúc Xá, Quận Ba Đình, Hà Nội"))
    assert place.text == "Phường Phúc Xá, Quận Ba Đình, Hà Nội"
    assert (place.code_list, place.ward_code) == (CodeList.PRE_2025, "00001")
    assert place.quality is Quality.MERGED
    assert place.current is not None
    assert place.current.province_code == "01"
    assert place.current.name.endswith("Thành phố Hà Nội")


def test_the_same_code_means_different_units_in_the_two_lists() -> None:
    old = MAP.derive(_old("00004"))  # Phường Trúc Bạch before 2025
    new = MAP.derive(Place(None, CodeList.Y2025, ward_code="00004"))  # Phường Ba Đình since
    assert new.current is not None
    assert new.current.name.startswith("Phường Ba Đình")
    assert new.quality is Quality.UNCHANGED
    assert old.current is not None
    assert old.quality is Quality.MERGED


def test_a_split_ward_takes_its_default_successor_and_says_so() -> None:
    split = [c for c, s in MAP.pre_2025.items() if len(s.units) > 1 and s.default is not None]
    assert split
    for code in split[:50]:
        successors = MAP.pre_2025[code]
        place = MAP.derive(_old(code))
        assert place.quality is Quality.SPLIT_DEFAULT
        assert place.current == successors.default
        assert place.current in successors.units


def test_a_stewards_choice_is_kept_by_later_derivations() -> None:
    code = next(c for c, s in MAP.pre_2025.items() if len(s.units) > 1)
    other = next(u for u in MAP.pre_2025[code].units if u != MAP.pre_2025[code].default)
    resolved = MAP.resolve(MAP.derive(_old(code)), other.ward_code)
    assert (resolved.current, resolved.quality) == (other, Quality.RESOLVED)
    assert MAP.derive(resolved) == resolved


@pytest.mark.parametrize(
    ("code", "code_list"), [("99999", CodeList.PRE_2025), ("99999", CodeList.Y2025)]
)
def test_an_unknown_code_is_an_error_naming_it(code: str, code_list: CodeList) -> None:
    with pytest.raises(UnknownPlaceCode, match=f"unknown {code_list} place code {code}"):
        MAP.derive(Place("?", code_list, ward_code=code))
