"""Synthetic people for the demo and the benchmarks: what each store holds about them.

Seeded, so the same arguments give the same people. Names are Vietnamese (Faker's vi_VN
parts, family name first, NFC). PINs follow the layout of DESIGN.md and are unique. Places
are real units drawn by code from the published lists: birthplaces from the pre-2025 list,
residences from either list. People live in households of one to six. About ``legacy`` of
the records were digitised from paper books with gaps: the civil-status copy has only the
birth year and an unknown sex, and its birth act has no PIN. A share ``mismatch`` of people
differ between the two stores on one shared field, as when an official keys a document twice.
Everyone has a birth act; in a household, the first two people, when adults of opposite sex,
are a married couple with a marriage act.
"""

from __future__ import annotations

import json
import random
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from faker import Faker

from connectors.merge.settings import BIRTH_FIELDS
from connectors.place_data import place_map
from engine.places import CodeList, Place, PlaceMap

# Ethnic groups and religions with their rough shares in the 2019 census (data, not logic).
_ETHNICITIES = {"Kinh": 85, "Tày": 2, "Thái": 2, "Mường": 2, "Khmer": 1, "Hoa": 1, "Nùng": 1}
_RELIGIONS = {"Không": 86, "Công giáo": 6, "Phật giáo": 5, "Tin Lành": 1, "Cao Đài": 1}
_MISMATCHED_FIELDS = ("full_name", "birth_date", "permanent_residence", "ethnicity")
_OLD_RESIDENCE_SHARE = 0.5  # residences still recorded under pre-2025 units
_ADULT_BEFORE = date(2005, 1, 1)
_FIRST_BIRTH = date(1930, 1, 1)
_BIRTH_DAYS = (date(2024, 12, 31) - _FIRST_BIRTH).days


@dataclass
class GeneratedPerson:
    """One person: the civil-status ``person`` row and the population ``citizen`` row."""

    pin: str
    civil: dict[str, Any]
    population: dict[str, Any]
    household: str
    birth_act: dict[str, Any]  # a birth_registration row, without person_id
    legacy: bool = False
    mismatch: str | None = None  # the shared field on which the two copies differ
    marriage_act: dict[str, Any] | None = None  # with spouse_a_pin (this person), spouse_b_pin


def place_value(place: Place) -> str:
    """The JSON of a place value as the stores keep it (``place`` domain)."""
    current = place.current
    return json.dumps(
        {
            "text": place.text,
            "code": place.ward_code or place.district_code,
            "code_list": str(place.code_list),
            "current": None
            if current is None
            else {
                "province_code": current.province_code,
                "ward_code": current.ward_code,
                "name": current.name,
            },
            "quality": None if place.quality is None else str(place.quality),
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def without_diacritics(text: str) -> str:
    """``Nguyễn Văn Đức`` keyed on a machine without Vietnamese input: ``Nguyen Van Duc``."""
    stripped = "".join(
        c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c)
    )
    return stripped.replace("Đ", "D").replace("đ", "d")


class Generator:
    """Draws people; ``people(n)`` yields them household by household."""

    def __init__(
        self,
        *,
        seed: int = 2025,
        mismatch: float = 0.05,
        legacy: float = 0.04,
        places: PlaceMap | None = None,
    ) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self._faker = Faker("vi_VN")
        self._faker.seed_instance(seed)
        self._mismatch, self._legacy = mismatch, legacy
        self._places = places or place_map()
        self._old_codes = sorted(self._places.pre_2025)
        self._new_codes = sorted(self._places.current)
        self._pins: set[str] = set()

    def people(self, n: int) -> Iterator[GeneratedPerson]:
        made = 0
        while made < n:
            size = min(n - made, self._rng.choice((1, 2, 3, 3, 4, 4, 5, 6)))
            household = f"HK{self._rng.randrange(10**10):010d}"
            residence = self.residence()
            members = [self._person(household, residence, p) for p in range(size)]
            if size > 1:
                self._marry(*members[:2])
            yield from members
            made += size

    def _marry(self, a: GeneratedPerson, b: GeneratedPerson) -> None:
        """Make ``a`` and ``b`` a married couple, with a marriage act, if they can be one."""
        born = [date.fromisoformat(p.population["birth_date"]) for p in (a, b)]
        if a.population["sex"] == b.population["sex"] or max(born) > _ADULT_BEFORE:
            return
        for person, spouse in ((a, b), (b, a)):
            for row in (person.civil, person.population):
                row["marital_status"], row["spouse"] = "married", spouse.pin
        married_on = max(born) + timedelta(days=365 * 22 + self._rng.randrange(3650))
        a.marriage_act = {
            **self._act(married_on, a.population["permanent_residence"]),
            "spouse_a_pin": a.pin,
            "spouse_b_pin": b.pin,
            "married_on": married_on.isoformat(),
        }

    def _act(self, on: date, place: str) -> dict[str, Any]:
        """The columns every act has: book, number, date, and the registering commune."""
        recorded = json.loads(place)
        return {
            "book": f"{on.year}",
            "number": f"{self._rng.randrange(10**7):07d}",
            "registered_on": on.isoformat(),
            "commune_code": recorded["code"],
            "commune_code_list": recorded["code_list"],
        }

    def _person(self, household: str, residence: str, position: int) -> GeneratedPerson:
        rng, faker = self._rng, self._faker
        sex = rng.choice(("male", "female"))
        given = faker.first_name_male() if sex == "male" else faker.first_name_female()
        name = unicodedata.normalize("NFC", f"{faker.last_name()} {faker.middle_name()} {given}")
        born = _FIRST_BIRTH + timedelta(days=rng.randrange(_BIRTH_DAYS))
        birthplace = self._place(self._old_codes, CodeList.PRE_2025)
        pin = self._pin(birthplace, born, sex)
        shared = {
            "full_name": name,
            "birth_date": born.isoformat(),
            "sex": sex,
            "place_of_birth": place_value(birthplace),
            "hometown": place_value(self._place(self._old_codes, CodeList.PRE_2025)),
            "ethnicity": _weighted(rng, _ETHNICITIES),
            "nationality": "Việt Nam",
            "marital_status": "single",
            "permanent_residence": residence,
        }
        civil = {
            "pin": pin,
            **shared,
            "father": self._parent("male"),
            "mother": self._parent("female"),
        }
        population = {
            "pin": pin,
            **shared,
            "religion": _weighted(rng, _RELIGIONS),
            "household": household,
            "relation_to_head": "head" if position == 0 else "member",
        }
        birth_act = {
            **self._act(born + timedelta(days=rng.randrange(1, 60)), shared["place_of_birth"]),
            "pin": pin,
            **{k: civil[k] for k in BIRTH_FIELDS},
        }
        person = GeneratedPerson(pin, civil, population, household, birth_act)
        if rng.random() < self._legacy:
            person.legacy = True
            civil["birth_date"], civil["sex"] = str(born.year), "unknown"
            birth_act |= {"pin": None, "birth_date": str(born.year), "sex": "unknown"}
        if rng.random() < self._mismatch:
            person.mismatch = rng.choice(_MISMATCHED_FIELDS)
            population[person.mismatch] = self._differing(person.mismatch, population)
        return person

    def _differing(self, name: str, row: dict[str, Any]) -> Any:
        value = row[name]
        if name == "full_name":
            return without_diacritics(value)
        if name == "birth_date":
            return (date.fromisoformat(value) + timedelta(days=1)).isoformat()
        if name == "permanent_residence":
            return self.residence()
        return "Kinh" if value != "Kinh" else "Mường"

    def _parent(self, sex: str) -> str:
        faker = self._faker
        given = faker.first_name_male() if sex == "male" else faker.first_name_female()
        return unicodedata.normalize("NFC", f"{faker.last_name()} {faker.middle_name()} {given}")

    def residence(self) -> str:
        """A residence place value: a pre-2025 or a 2025 unit, drawn by code."""
        if self._rng.random() < _OLD_RESIDENCE_SHARE:
            return place_value(self._place(self._old_codes, CodeList.PRE_2025))
        return place_value(self._place(self._new_codes, CodeList.Y2025))

    def _place(self, codes: list[str], code_list: CodeList) -> Place:
        code = self._rng.choice(codes)
        if code_list is CodeList.Y2025:
            text = self._places.current[code].name
        else:
            text = self._places.pre_2025[code].name
        return self._places.derive(Place(text, code_list, ward_code=code))

    def _pin(self, birthplace: Place, born: date, sex: str) -> str:
        assert birthplace.ward_code is not None  # noqa: S101 - drawn from the ward list
        province = self._places.pre_2025[birthplace.ward_code].province_code
        century_sex = 2 * ((born.year - 1900) // 100) + (sex == "female")
        while True:
            pin = f"0{province}{century_sex}{born.year % 100:02d}{self._rng.randrange(10**6):06d}"
            if pin not in self._pins:
                self._pins.add(pin)
                return pin


def _weighted(rng: random.Random, shares: dict[str, int]) -> str:
    return rng.choices(list(shares), weights=list(shares.values()))[0]
