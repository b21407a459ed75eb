"""The data generator: valid PINs, NFC Vietnamese names, real places, households, couples
with their marriage acts, a birth act for everyone, legacy gaps and mismatches in their shares."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter

import pytest

from civsync.generator import GeneratedPerson, Generator
from connectors.place_data import place_map, pre_2025_province_codes
from engine.pin import check_pin

PEOPLE = 2000


@pytest.fixture(scope="module")
def people() -> list[GeneratedPerson]:
    return list(Generator(seed=11, mismatch=0.1, legacy=0.04).people(PEOPLE))


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
    for person in people[:200]:
        name = person.civil["full_name"]
        assert unicodedata.normalize("NFC", name) == name
        assert len(name.split()) >= 3
        birthplace = json.loads(person.civil["place_of_birth"])
        assert birthplace["code_list"] == "pre-2025"
        assert birthplace["code"] in places.pre_2025
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
            assert (act["pin"], act["sex"], len(act["birth_date"])) == (None, "unknown", 4)
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
