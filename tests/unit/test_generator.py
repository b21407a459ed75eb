"""The data generator: valid PINs, NFC Vietnamese names, real places, households, couples
with their marriage acts, a birth act for everyone, legacy gaps and mismatches in their shares;
and a country's shapes: family-name shares, sex-fitting middle names, births by the pyramid,
adult heads, marriages at the legal age, deaths, births under the 2025 list, no future date,
re-issued PINs, equal values recorded another way, places weighted by province population."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from datetime import date

import pytest

from civsync.generator import REFORM, TODAY, GeneratedPerson, Generator, old_style_tones
from connectors.place_data import place_map, pre_2025_province_codes, province_population
from engine import dates
from engine.normal import equivalent
from engine.pin import check_pin

PEOPLE = 2000
MANY = 10_000  # for shares: households make people's names and ages cluster


@pytest.fixture(scope="module")
def people() -> list[GeneratedPerson]:
    return list(Generator(seed=11, mismatch=0.1, legacy=0.04).people(PEOPLE))


@pytest.fixture(scope="module")
def many() -> list[GeneratedPerson]:
    return list(Generator(seed=5).people(MANY))


def test_the_same_seed_gives_the_same_people() -> None:
    first = [p.pin for p in Generator(seed=3).people(50)]
    assert first == [p.pin for p in Generator(seed=3).people(50)]


def test_pins_are_unique_and_agree_with_birth_year_sex_and_province(
    people: list[GeneratedPerson],
) -> None:
    provinces = pre_2025_province_codes()
    assert len({p.pin for p in people}) == PEOPLE
    for person in people:
        row = person.population
        assert (
            check_pin(person.pin, birth_date=row["birth_date"], sex=row["sex"], provinces=provinces)
            == []
        )


def test_names_are_nfc_vietnamese_and_places_real_units(people: list[GeneratedPerson]) -> None:
    places = place_map()
    for person in people:
        name = person.civil["full_name"]
        assert unicodedata.normalize("NFC", name) == name
        assert len(name.split()) >= 3
        birthplace = json.loads(person.civil["place_of_birth"])
        codes = places.pre_2025 if birthplace["code_list"] == "pre-2025" else places.current
        assert birthplace["code"] in codes
    assert any(not n.isascii() for n in (p.civil["full_name"] for p in people))


def test_everyone_has_a_birth_act_legacy_ones_with_gaps_and_no_pin(
    people: list[GeneratedPerson],
) -> None:
    legacy = [p for p in people if p.legacy]
    assert 0.02 < len(legacy) / PEOPLE < 0.06
    for person in people:
        act = person.birth_act
        assert act["full_name"] == person.civil["full_name"]
        assert act["commune_code"] == json.loads(person.civil["place_of_birth"])["code"]
        if person.legacy:
            assert (act["pin"], act["sex"]) == (None, "unknown")
            assert act["birth_date"] == person.civil["birth_date"]
            assert person.population["birth_date"].startswith(act["birth_date"])
        else:
            assert act["pin"] == person.pin
            assert act["birth_date"] == person.civil["birth_date"]


def test_couples_are_married_to_each_other_in_both_stores_with_one_act(
    people: list[GeneratedPerson],
) -> None:
    by_pin = {p.pin: p for p in people}
    acts = [p.marriage_act for p in people if p.marriage_act]
    assert len(acts) > PEOPLE // 20
    for act in acts:
        a, b = by_pin[act["spouse_a_pin"]], by_pin[act["spouse_b_pin"]]
        assert a.household == b.household
        assert a.population["sex"] != b.population["sex"]
        for person, spouse in ((a, b), (b, a)):
            for row in (person.civil, person.population):
                assert (row["marital_status"], row["spouse"]) == ("married", spouse.pin)
    married = sum(p.population["marital_status"] == "married" for p in people)
    assert married == 2 * len(acts)


def test_mismatches_differ_on_the_field_they_name(people: list[GeneratedPerson]) -> None:
    mismatched = [p for p in people if p.mismatch]
    assert 0.07 < len(mismatched) / PEOPLE < 0.13
    for person in mismatched:
        assert person.mismatch is not None
        assert person.civil[person.mismatch] != person.population[person.mismatch]
    assert set(Counter(p.mismatch for p in mismatched)) == {
        "full_name",
        "birth_date",
        "permanent_residence",
        "ethnicity",
    }


def test_legacy_dates_give_the_year_or_the_year_and_month(people: list[GeneratedPerson]) -> None:
    precisions = Counter(dates.precision(p.civil["birth_date"]) for p in people if p.legacy)
    assert set(precisions) == {1, 2}
    assert precisions[1] > precisions[2]


def _share(count: int, total: int) -> float:
    return 100 * count / total


def test_family_names_have_their_published_shares(many: list[GeneratedPerson]) -> None:
    family = Counter(p.civil["full_name"].split()[0] for p in many)
    expected = {"Nguyễn": 38, "Trần": 11, "Lê": 9.5, "Phạm": 7, "Phan": 4.5}
    for name, share in expected.items():
        assert share * 0.85 < _share(family[name], MANY) < share * 1.15, name
    assert 3.5 < _share(family["Hoàng"] + family["Huỳnh"], MANY) < 6.5
    assert 2.5 < _share(family["Vũ"] + family["Võ"], MANY) < 5.5
    assert {"Đặng", "Bùi", "Đỗ", "Hồ", "Ngô", "Dương", "Lý"} <= set(family)


def test_men_never_have_the_middle_name_thi(many: list[GeneratedPerson]) -> None:
    middles = {sex: Counter[str]() for sex in ("male", "female")}
    for person in many:
        middles[person.population["sex"]][person.civil["full_name"].split()[1]] += 1
        assert person.civil["father"].split()[1] != "Thị"
    assert middles["male"]["Thị"] == 0
    assert middles["male"]["Văn"] > MANY / 10
    assert middles["female"]["Thị"] > MANY / 10


def test_birth_years_follow_the_pyramid_not_a_uniform_draw(many: list[GeneratedPerson]) -> None:
    born = Counter(int(p.population["birth_date"][:4]) for p in many)
    thirties = sum(born[y] for y in range(1930, 1940))
    eighties = sum(born[y] for y in range(1980, 1990))
    assert _share(thirties, MANY) < 2  # a uniform draw over 1930-2025 gives 10.5 each
    assert 11 < _share(eighties, MANY) < 20
    minors = sum(p.population["birth_date"] > "2007-10-31" for p in many)
    assert 18 < _share(minors, MANY) < 33


def test_heads_of_households_are_adults(many: list[GeneratedPerson]) -> None:
    heads = [p for p in many if p.population["relation_to_head"] == "head"]
    assert len(heads) == len({p.household for p in many})
    for head in heads:
        assert head.population["birth_date"] <= "2007-10-31"
        assert head.population["date_of_death"] is None


def test_marriages_are_at_the_legal_age_and_never_in_the_future(
    many: list[GeneratedPerson],
) -> None:
    by_pin = {p.pin: p for p in many}
    acts = [p.marriage_act for p in many if p.marriage_act]
    assert len(acts) > MANY // 10
    for act in acts:
        married = date.fromisoformat(act["married_on"])
        assert married <= TODAY
        assert act["registered_on"] == act["married_on"]
        assert act["commune_code_list"] == ("2025" if married >= REFORM else "pre-2025")
        for pin in (act["spouse_a_pin"], act["spouse_b_pin"]):
            row = by_pin[pin].population
            age = 20 if row["sex"] == "male" else 18
            assert (married - date.fromisoformat(row["birth_date"])).days >= age * 365


def test_no_date_is_later_than_the_day_the_data_describes(many: list[GeneratedPerson]) -> None:
    for person in many:
        acts = [person.birth_act, person.marriage_act or {}, person.death_act or {}]
        days = [
            person.population["birth_date"],
            person.population["date_of_death"],
            *(act.get("registered_on") for act in acts),
        ]
        assert all(day is None or date.fromisoformat(day) <= TODAY for day in days)


def test_some_have_died_mostly_the_old_with_a_death_act(many: list[GeneratedPerson]) -> None:
    dead = [p for p in many if p.death_act]
    assert 0.3 < _share(len(dead), MANY) < 3
    old = [p for p in dead if p.population["birth_date"] < "1960"]
    assert len(old) > len(dead) / 2
    for person in dead:
        act = person.death_act
        assert act is not None
        assert act["pin"] == person.pin
        for row in (person.civil, person.population):
            assert row["date_of_death"] == act["date_of_death"]
        assert person.population["birth_date"] < act["date_of_death"] < act["registered_on"]
    alive = [p for p in many if not p.death_act]
    assert all(p.civil["date_of_death"] is None for p in alive)


def test_births_registered_after_the_reform_use_the_2025_list(
    many: list[GeneratedPerson],
) -> None:
    places = place_map()
    late = [p for p in many if p.birth_act["registered_on"] >= REFORM.isoformat()]
    assert late
    assert any(p.population["birth_date"] > "2024-12-31" for p in many)
    for person in many:
        act, birthplace = person.birth_act, json.loads(person.civil["place_of_birth"])
        in_force = "2025" if person in late else "pre-2025"
        assert act["commune_code_list"] == birthplace["code_list"] == in_force
    for person in late:
        unit = places.current[json.loads(person.civil["place_of_birth"])["code"]]
        assert person.pin[1:3] == unit.province_code  # the 2025 province's code


def test_every_row_of_a_table_has_the_same_columns(many: list[GeneratedPerson]) -> None:
    """The demo copies rows with the first row's columns."""
    for rows in ([p.civil for p in many], [p.population for p in many]):
        assert len({tuple(row) for row in rows}) == 1


def test_a_few_get_a_second_pin_after_a_correction_of_sex_or_birth_year(
    many: list[GeneratedPerson],
) -> None:
    provinces = pre_2025_province_codes()
    pins = {p.pin for p in many}
    eligible = [
        p
        for p in many
        if not (p.legacy or p.mismatch or p.variant)
        and p.population["date_of_death"] is None
        and p.population["spouse"] is None
    ]
    reissued = [p for p in many if p.reissue]
    assert set(map(id, reissued)) <= set(map(id, eligible))
    assert 0.5 < _share(len(reissued), len(eligible)) < 2  # 1 % of those who can have one
    reasons = Counter(p.reissue.reason for p in reissued if p.reissue)
    assert reasons["birth_year_correction"] > reasons["sex_redetermination"] > 0
    for person in reissued:
        reissue = person.reissue
        assert reissue is not None
        assert reissue.old_pin == person.pin != reissue.new_pin
        assert reissue.new_pin not in pins  # never anyone else's
        assert reissue.new_pin[:3] == person.pin[:3]  # the same province of registration
        row = {**person.population, reissue.field: reissue.value}
        assert row[reissue.field] != person.population[reissue.field]
        assert check_pin(reissue.new_pin, birth_date=row["birth_date"], sex=row["sex"],
                         provinces=provinces) == []  # fmt: skip
        act = reissue.correction
        assert (act["pin"], act["corrects"], act["field"]) == (
            person.pin,
            "birth_registration",
            {"sex_redetermination": "sex", "birth_year_correction": "birth_date"}[reissue.reason],
        )
        assert act["old_value"] == person.civil[reissue.field]
        assert act["registered_on"] == reissue.changed_on
        assert person.birth_act["registered_on"] < reissue.changed_on <= TODAY.isoformat()
        assert act["commune_code_list"] == ("2025" if reissue.changed_on >= "2025-07-01" else
                                            "pre-2025")  # fmt: skip
    new_pins = [p.reissue.new_pin for p in reissued if p.reissue]
    assert len(set(new_pins)) == len(new_pins)


def test_old_style_tone_marks_move_only_in_open_oa_oe_uy() -> None:
    assert old_style_tones("Lê Thị Hòa") == "Lê Thị Hoà"
    assert old_style_tones("Thúy Thủy khỏe") == "Thuý Thuỷ khoẻ"
    for unchanged in ("Hoàng Quý Toàn", "Quỳnh", "Nguyễn Văn An"):
        assert old_style_tones(unchanged) == unchanged


def test_some_population_copies_record_an_equal_value_another_way(
    many: list[GeneratedPerson],
) -> None:
    varied = [p for p in many if p.variant]
    kinds = Counter(p.variant for p in varied)
    assert set(kinds) == {"tone marks", "look-alike letter", "code list"}
    assert 1 < _share(len(varied), MANY) < 5  # 5 % of those without a mismatch, if they can
    assert not any(p.mismatch for p in varied)
    fields = {"tone marks": "full_name", "look-alike letter": "full_name"}
    for person in varied:
        field = fields.get(person.variant or "", "permanent_residence")
        civil, population = person.civil[field], person.population[field]
        assert civil != population
        assert equivalent(field, civil, population)  # the same value: no conflict may come
        alike = set(person.civil) & set(person.population) - {field}
        alike -= {"birth_date", "sex"} if person.legacy else set()
        assert all(person.civil[k] == person.population[k] for k in alike)  # nothing else
        if person.variant == "look-alike letter":
            assert population == civil.replace("Đ", "\u00d0")
        if person.variant == "code list":
            old, new = json.loads(civil), json.loads(population)
            assert (old["code_list"], new["code_list"]) == ("pre-2025", "2025")
            assert new["code"] == old["current"]["ward_code"]


DRAWS = 20_000  # places drawn for the shares of provinces


def test_hometowns_follow_the_population_of_pre_2025_provinces() -> None:
    """A pre-2025 province is drawn by its population (censusVN2009), not by its communes."""
    places, document = place_map(), province_population()
    people = Generator(seed=7).people(DRAWS)
    old = Counter(
        places.pre_2025[json.loads(p.civil["hometown"])["code"]].province_code for p in people
    )
    population = {code: row["population"] for code, row in document["provinces"].items()}
    for province in ("01", "79", "38"):  # Hà Nội, Hồ Chí Minh, Thanh Hóa
        expected = _share(population[province], document["total"])
        assert abs(_share(old[province], DRAWS) - expected) < expected / 10, province
    # Bắc Kạn: 0.36 % of the people, though 1.1 % of the communes
    assert _share(old["06"], DRAWS) < 0.6 < _share(old["01"], DRAWS) / 10
    assert _share(old["79"], DRAWS) > 2 * _share(
        sum(s.province_code == "79" for s in places.pre_2025.values()), len(places.pre_2025)
    )  # not a share of communes (2.7 % for Hồ Chí Minh)


def test_2025_places_follow_the_population_of_the_provinces_merged_into_them() -> None:
    places, document = place_map(), province_population()
    population = {code: row["population"] for code, row in document["provinces"].items()}
    generator = Generator(seed=9)
    drawn = [json.loads(generator.residence()) for _ in range(DRAWS)]
    new = Counter(
        places.current[d["code"]].province_code for d in drawn if d["code_list"] == "2025"
    )
    total = sum(new.values())
    assert DRAWS / 3 < total < 2 * DRAWS / 3  # the rest are pre-2025 residences
    merged = {"79": ("74", "77", "79"), "01": ("01",), "19": ("06", "19")}  # as of 1 July 2025
    for province, old in merged.items():
        expected = _share(sum(population[p] for p in old), document["total"])
        assert abs(_share(new[province], total) - expected) < expected / 10, province
