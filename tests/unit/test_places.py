"""Deriving the 2025 unit of a place by code, from the published vietnamadminunits data: a
code no list resolves and a bare code that reads as two units go to a steward, never to
quarantine."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from civsync.generator import place_value
from connectors.place_data import place_map
from engine.events import Hlc
from engine.mapping import PersonEdit
from engine.person import MergedPerson, merge
from engine.places import (
    CodeList,
    Place,
    Quality,
    UnknownPlaceCode,
    for_steward,
    recorded_place,
)
from engine.policy import CIVIL, DEFAULT_POLICY

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


@pytest.mark.parametrize("code_list", [CodeList.PRE_2023, CodeList.PRE_2025, CodeList.Y2025, None])
@pytest.mark.parametrize("code", ["99999", None])
def test_a_code_no_list_resolves_is_kept_as_recorded_and_unresolved(
    code: str | None, code_list: CodeList | None
) -> None:
    recorded = Place("Xã Đông Phong, Huyện Yên Phong, Bắc Ninh", code_list, ward_code=code)
    place = MAP.derive(recorded)
    assert (place.current, place.quality) == (None, Quality.UNRESOLVED)
    assert (place.text, place.code_list, place.ward_code) == (
        recorded.text,
        code_list,
        code,
    )
    assert for_steward(place_value(place))


def test_a_bare_code_that_means_the_same_unit_in_both_lists_derives_as_that_unit() -> None:
    # 00160: Phường Nghĩa Tân became Phường Nghĩa Đô on its own, and kept its code.
    assert MAP.pre_2025["00160"].name.startswith("Phường Nghĩa Tân")
    bare = MAP.derive(Place("Nghĩa Tân", None, ward_code="00160"))
    assert bare.current == MAP.current["00160"]
    assert bare.current.name.startswith("Phường Nghĩa Đô")
    assert bare.quality is Quality.UNCHANGED
    assert not for_steward(place_value(bare))


def test_a_bare_code_takes_the_less_certain_quality_of_its_two_readings() -> None:
    # 00004: Phường Trúc Bạch before 2025, merged into Phường Ba Đình, which took its code.
    bare = MAP.derive(Place(None, None, ward_code="00004"))
    assert bare.current == MAP.current["00004"]
    assert bare.quality is Quality.MERGED
    # 00025: Phường Ngọc Khánh was split; its default successor, Giảng Võ, took its code.
    split = MAP.derive(Place(None, None, ward_code="00025"))
    assert split.current == MAP.current["00025"]
    assert split.current.name.startswith("Phường Giảng Võ")
    assert split.quality is Quality.SPLIT_DEFAULT


def test_a_bare_code_that_means_two_units_is_ambiguous_and_for_a_steward() -> None:
    # 00103: Phường Xuân La (pre-2025, its default successor Xuân Đỉnh) or Phường Tây Hồ (2025).
    assert MAP.pre_2025["00103"].name.startswith("Phường Xuân La")
    assert MAP.current["00103"].name.startswith("Phường Tây Hồ")
    bare = MAP.derive(Place("Xuân La, Tây Hồ", None, ward_code="00103"))
    assert (bare.current, bare.quality) == (None, Quality.AMBIGUOUS)
    assert bare.text == "Xuân La, Tây Hồ"
    assert for_steward(place_value(bare))
    listed = MAP.derive(Place(None, CodeList.PRE_2025, ward_code="00103"))
    assert listed.current is not None
    assert listed.current.name.startswith("Phường Xuân Đỉnh")


@pytest.mark.parametrize(
    ("code", "only_in", "name"),
    [
        ("00001", CodeList.PRE_2025, "Phường Phúc Xá"),  # not a 2025 code
        ("11948", CodeList.Y2025, "Đặc khu Bạch Long Vĩ"),  # not a pre-2025 code
    ],
)
def test_a_bare_code_only_one_list_has_is_read_in_that_list(
    code: str, only_in: CodeList, name: str
) -> None:
    listed = MAP.derive(Place(None, only_in, ward_code=code))
    bare = MAP.derive(Place(None, None, ward_code=code))
    assert (bare.current, bare.quality) == (listed.current, listed.quality)
    assert bare.current is not None
    units = MAP.current if only_in is CodeList.Y2025 else MAP.pre_2025
    assert units[code].name.startswith(name)


def test_every_bare_code_of_either_list_derives_or_is_ambiguous() -> None:
    qualities = Counter(
        MAP.derive(Place(None, None, ward_code=code)).quality
        for code in {*MAP.pre_2025, *MAP.current}
    )
    assert Quality.UNRESOLVED not in qualities
    assert 0 < qualities[Quality.AMBIGUOUS] < 100  # codes both lists give to other units
    assert qualities[Quality.MERGED] > qualities[Quality.UNCHANGED] > 0


def test_the_recorded_part_of_a_stored_value_and_an_unknown_code_list_read_as_none() -> None:
    stored = json.loads(place_value(MAP.derive(_old("00001", "Phúc Xá"))))
    assert recorded_place(stored) == _old("00001", "Phúc Xá")
    older = {"text": "Xã Phú Lương", "code": "00001", "code_list": "2019"}
    assert recorded_place(older) == Place("Xã Phú Lương", None, ward_code="00001")
    assert recorded_place({"text": "no code"}) == Place("no code", None)


@pytest.mark.parametrize(
    ("quality", "reviewed"),
    [
        (Quality.UNRESOLVED, True),
        (Quality.AMBIGUOUS, True),
        (Quality.SPLIT_DEFAULT, True),
        (Quality.NAME_DERIVED, True),
        (Quality.MERGED, False),
        (Quality.UNCHANGED, False),
        (Quality.RESOLVED, False),
    ],
)
def test_the_merger_opens_a_review_for_a_place_a_steward_should_see(
    quality: Quality, reviewed: bool
) -> None:
    place = Place("Thôn 3, xã cũ", CodeList.PRE_2025, ward_code="99999", quality=quality)
    value = place_value(place)
    edit = PersonEdit("p1", CIVIL, "c1", Hlc(1, 0, CIVIL), {"place_of_birth": value})
    result = merge(MergedPerson.new("p1"), edit, DEFAULT_POLICY)
    assert [c.decision for c in result.conflicts] == (["review"] if reviewed else [])
    assert result.person.view(DEFAULT_POLICY)["place_of_birth"].value == value  # as recorded
    assert for_steward(value) is reviewed


def test_the_existing_qualities_keep_their_names_and_meaning() -> None:
    assert {q.value for q in Quality} == {
        "unchanged",
        "merged",
        "split-default",
        "derived-by-name",
        "resolved",
        "ambiguous",
        "unresolved",
        "unmappable",
    }
    assert {c.value for c in CodeList} == {"pre-2023", "pre-2025", "2025"}
    # The early-2025 list derives as before: by its authoritative mapping, never by name.
    qualities = Counter(MAP.derive(_old(code)).quality for code in MAP.pre_2025)
    assert Quality.NAME_DERIVED not in qualities
    assert Quality.UNRESOLVED not in qualities


def test_a_steward_choosing_an_unknown_unit_is_an_error_naming_it() -> None:
    place = MAP.derive(Place("?", CodeList.PRE_2025, ward_code="99999"))
    with pytest.raises(UnknownPlaceCode, match="unknown 2025 place code 99999"):
        MAP.resolve(place, "99999")
    assert MAP.resolve(place, "00004").quality is Quality.RESOLVED


@pytest.mark.parametrize(
    "quality", ['{"ambiguous": null}', '["ambiguous"]', "null", "3", '"ambiguous "']
)
def test_a_quality_that_is_no_quality_is_not_for_a_steward(quality: str) -> None:
    """Found by fuzzing: an object where the quality goes raised TypeError (unhashable)."""
    assert not for_steward(f'{{"text": "x", "code": "00001", "quality": {quality}}}')
