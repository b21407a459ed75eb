"""Synthetic people for the demo and the benchmarks: what each store holds about them.

Seeded, so the same arguments give the same people, as of one fixed day (``TODAY``): no date
is later. Names are Vietnamese, family name first, NFC: family names with their published
shares (Nguyễn about 38 %), a middle name fitting the sex (never "Thị" for a man), given
names from Faker's vi_VN lists; a child has the father's family name. Birth years follow the
population pyramid (rough shares by five-year band), not a uniform draw. PINs follow the
layout of docs/design.md and are unique. Places are real units drawn by code from the
published lists, weighted by population: the province with a probability proportional to
its population as censusVN2009 gives it for the 2009 census (a 2025 province: that of the
pre-2025 provinces merged into it), then any of its communes, each as likely as another;
birthplaces from the pre-2025 list, or the 2025 list for births registered after the reform
of 1 July 2025; residences from either list. People live in households of one to six, headed
by an adult. About ``legacy`` of the records were digitised from paper books with gaps: the
civil-status copy has only the birth year, or the year and month, and an unknown sex, and
its birth act has no PIN. A share ``mismatch`` of people differ between the two stores on
one shared field, as when an official keys a document twice; of the others, about
``variants`` of those whose values allow it have a population copy that records an equal
value another way (tone marks placed the old way, ten times as often; a look-alike letter;
the 2025 code of the same place). Everyone has a birth act; in a household, the first two
people, when adults of opposite sex, are a married couple with a marriage act, married at
the legal age or later (20 for men, 18 for women). Some people have died, mostly the old,
with a death act. A share ``reissued`` of the living, unmarried people recorded alike in
full get a second PIN after a correction of their sex or birth year (``PinReissue``), for
the demo to apply.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

from faker import Faker

from connectors.merge.settings import BIRTH_FIELDS
from connectors.place_data import place_map, province_population
from engine.places import CodeList, Place, PlaceMap

_T = TypeVar("_T")
TODAY = date(2025, 10, 31)  # the day the generated stores describe
REFORM = date(2025, 7, 1)  # acts registered from then on use the 2025 code list

# Data, not logic. Family names with their shares in per cent (the shares usually cited for
# Vietnam: Nguyễn 38, Trần 11, Lê 9.5, Phạm 7, Hoàng/Huỳnh 5, Phan 4.5, Vũ/Võ 3.9, ...), the
# rest spread over other common names.
_FAMILY_NAMES = {
    "Nguyễn": 38.0, "Trần": 11.0, "Lê": 9.5, "Phạm": 7.0, "Hoàng": 3.0, "Huỳnh": 2.0,
    "Phan": 4.5, "Vũ": 2.0, "Võ": 1.9, "Đặng": 2.1, "Bùi": 2.0, "Đỗ": 1.4, "Hồ": 1.3,
    "Ngô": 1.3, "Dương": 1.0, "Lý": 0.5,
    **dict.fromkeys(
        ("Đào", "Đoàn", "Vương", "Trịnh", "Trương", "Lâm", "Phùng", "Mai", "Tô", "Hà", "Tạ",
         "Cao", "Lương", "Đinh", "Lưu", "Châu", "Quách", "Thái", "Kiều", "Triệu"),
        0.575,
    ),
}  # fmt: skip
_MIDDLE_NAMES = {
    "male": {"Văn": 40, "Đức": 8, "Minh": 8, "Quang": 6, "Hữu": 6, "Công": 5, "Thành": 5,
             "Đình": 4, "Xuân": 4, "Ngọc": 3, "Tuấn": 3, "Hoàng": 3, "Trọng": 3, "Thanh": 3},
    "female": {"Thị": 45, "Ngọc": 10, "Thu": 6, "Thanh": 6, "Kim": 5, "Phương": 4, "Hồng": 4,
               "Mai": 3, "Bảo": 3, "Minh": 3, "Diệu": 3, "Khánh": 3, "Thúy": 3, "Hoài": 2},
}  # fmt: skip
# Births by band of years, in per cent of the people living in 2025: rough shares read off
# the 2019 census pyramid, aged to 2025. The last band ends before the generated day.
_BIRTH_BANDS = {
    (1930, 1934): 0.3, (1935, 1939): 0.6, (1940, 1944): 1.0, (1945, 1949): 1.5,
    (1950, 1954): 2.5, (1955, 1959): 3.6, (1960, 1964): 4.6, (1965, 1969): 5.3,
    (1970, 1974): 6.0, (1975, 1979): 6.8, (1980, 1984): 7.4, (1985, 1989): 8.1,
    (1990, 1994): 8.0, (1995, 1999): 7.3, (2000, 2004): 6.8, (2005, 2009): 7.0,
    (2010, 2014): 8.0, (2015, 2019): 8.0, (2020, 2024): 7.3, (2025, 2025): 1.0,
}  # fmt: skip
_LAST_BIRTH = date(2025, 8, 31)  # registered within 60 days, before TODAY
# Share of people who have died, by age band (lower bound of age): mostly the old.
_DEATH_SHARES = {75: 0.2, 60: 0.06, 0: 0.005}
_DEATHS_WITHIN = 3650  # days before TODAY a death is dated at most
_MARRIAGE_AGE = {"male": 20, "female": 18}  # Law on Marriage and Family 2014, art. 8
_ADULT = 18
_CHILD_DRAWS = 50  # draws for a child born after its parents came of age, then anyone
_LEGACY_MONTH_SHARE = 0.3  # legacy dates with the month as well as the year
# Ethnic groups and religions with their rough shares in the 2019 census (data, not logic).
_ETHNICITIES = {"Kinh": 85, "Tày": 2, "Thái": 2, "Mường": 2, "Khmer": 1, "Hoa": 1, "Nùng": 1}
_RELIGIONS = {"Không": 86, "Công giáo": 6, "Phật giáo": 5, "Tin Lành": 1, "Cao Đài": 1}
_MISMATCHED_FIELDS = ("full_name", "birth_date", "permanent_residence", "ethnicity")
_OLD_RESIDENCE_SHARE = 0.5  # residences still recorded under pre-2025 units
# Ways the population copy records a value equal to civil-status's (engine.normal): a name
# with the tone marks placed the old way, a name with a look-alike Ð (U+00D0) for Đ, a
# residence recorded under the 2025 list. No conflict may come of them. Each is taken, where
# the value allows it, by this many times the share ``variants``: few names have a syllable
# whose tone old keyboards place otherwise, and such a store writes most of them that way.
_VARIANTS = {"tone marks": 10, "look-alike letter": 1, "code list": 1}
# PINs re-issued after civil-status corrected the sex or the birth year. No published figures
# give the mix; most re-issues are taken to follow a birth-year correction.
_REISSUE_REASONS = {"birth_year_correction": 3, "sex_redetermination": 1}
_REISSUED_WITHIN = 730  # days before TODAY a PIN was re-issued at most
_OLD_STYLE_TONE = re.compile(  # NFD: a tone on o before a or e, or on u before y, ending a word
    r"(?<=[oO])([\u0300\u0301\u0303\u0309\u0323])([aeAE])(?![^\W\d_])"
    r"|(?<=[uU])([\u0300\u0301\u0303\u0309\u0323])([yY])(?![^\W\d_])"
)
_SPOUSE_SHARE = 0.8  # households whose second member is the head's adult spouse
_CHILD_SHARE = 0.5  # other members who are the couple's children (the rest: other kin)


@dataclass(frozen=True)
class PinReissue:
    """A PIN the population store re-issues after civil-status registered a correction of
    the sex or the birth year. The demo applies it in that order: ``correction`` (a
    ``correction`` row without person_id and corrected_id, which is the birth act), then, in
    the population store, ``citizen.pin`` becomes ``new_pin`` and ``pin_history`` records
    ``old_pin``, ``new_pin``, ``changed_on`` and ``reason`` (its codes)."""

    old_pin: str
    new_pin: str
    changed_on: str
    reason: str
    correction: dict[str, Any]

    @property
    def field(self) -> str:
        """The shared field the correction changes: ``sex`` or ``birth_date``."""
        return str(self.correction["field"])

    @property
    def value(self) -> str:
        """Its new value."""
        return str(self.correction["new_value"])


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
    death_act: dict[str, Any] | None = None  # a death_registration row, without person_id
    variant: str | None = None  # how the population copy records an equal value otherwise
    reissue: PinReissue | None = None  # rows and acts hold the state before it


@dataclass(frozen=True)
class _PlaceDraw:
    """Draws a commune code of one code list: a province by its population, then any of
    its communes."""

    provinces: tuple[str, ...]
    cum_weights: tuple[int, ...]
    codes: Mapping[str, tuple[str, ...]]  # by province code, sorted

    def __call__(self, rng: random.Random) -> str:
        province = rng.choices(self.provinces, cum_weights=self.cum_weights)[0]
        return rng.choice(self.codes[province])


def _place_draws(places: PlaceMap, populations: Mapping[str, int]) -> dict[CodeList, _PlaceDraw]:
    """The draw of each code list: a pre-2025 province weighted by its population (by code,
    ``populations``), a 2025 province by the sum of those of the pre-2025 provinces whose
    units derive to it. Raises ``ValueError`` for a province without a population, or a
    pre-2025 province whose units derive to more than one 2025 province."""
    old = _by_province((code, s.province_code) for code, s in places.pre_2025.items())
    new = _by_province((code, unit.province_code) for code, unit in places.current.items())
    merged_into: dict[str, set[str]] = {}
    for successors in places.pre_2025.values():
        for unit in successors.units:
            merged_into.setdefault(successors.province_code, set()).add(unit.province_code)
    missing = sorted(set(old) - set(populations))
    split = sorted(p for p, into in merged_into.items() if len(into) != 1)
    if missing or split:
        raise ValueError(f"provinces without a population {missing}, or split in 2025 {split}")
    weights = {CodeList.PRE_2025: {p: populations[p] for p in old}}
    weights[CodeList.Y2025] = dict.fromkeys(new, 0)
    for province, (into,) in merged_into.items():
        weights[CodeList.Y2025][into] += populations[province]
    return {
        code_list: _PlaceDraw(
            tuple(codes), tuple(itertools.accumulate(weights[code_list][p] for p in codes)), codes
        )
        for code_list, codes in ((CodeList.PRE_2025, old), (CodeList.Y2025, new))
    }


def _by_province(pairs: Iterator[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Codes by province code, both sorted, from (code, province code) pairs."""
    by: dict[str, list[str]] = {}
    for code, province in pairs:
        by.setdefault(province, []).append(code)
    return {province: tuple(sorted(by[province])) for province in sorted(by)}


def place_value(place: Place) -> str:
    """The JSON of a place value as the stores keep it (``place`` domain)."""
    current = place.current
    return json.dumps(
        {
            "text": place.text,
            "code": place.ward_code or place.district_code,
            "code_list": None if place.code_list is None else str(place.code_list),
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


def old_style_tones(text: str) -> str:
    """``Hòa``, ``Thúy``, ``khỏe`` written with the tone mark on the last vowel, as older books
    and many keyboards do: ``Hoà``, ``Thuý``, ``khoẻ`` (the same name in the normal form)."""
    decomposed = unicodedata.normalize("NFD", text)
    moved = _OLD_STYLE_TONE.sub(lambda m: m[2] + m[1] if m[1] else m[4] + m[3], decomposed)
    return unicodedata.normalize("NFC", moved)


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
        variants: float = 0.05,
        reissued: float = 0.01,
    ) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        self._faker = Faker("vi_VN")
        self._faker.seed_instance(seed)
        self._mismatch, self._legacy = mismatch, legacy
        self._variants, self._reissued = variants, reissued
        self._places = places or place_map()
        populations = province_population()["provinces"]
        self._draws = _place_draws(
            self._places, {p: r["population"] for p, r in populations.items()}
        )
        self._pins: set[str] = set()

    def people(self, n: int) -> Iterator[GeneratedPerson]:
        made = 0
        while made < n:
            size = min(n - made, self._rng.choice((1, 2, 3, 3, 4, 4, 5, 6)))
            household = f"HK{self._rng.randrange(10**10):010d}"
            residence = self.residence()
            members = [self._head(household, residence)]
            if size > 1:
                members.append(self._second(household, residence, members[0]))
                self._marry(*members)
            family, parents = _family_of(members), [m.population["birth_date"] for m in members]
            after = _years_after(date.fromisoformat(max(parents)), _ADULT)
            for _ in range(size - 2):
                child = self._rng.random() < _CHILD_SHARE
                members.append(
                    self._person(
                        household, residence, family=family, after=after if child else None
                    )
                )
            for member in members:
                self._reissue(member)
            yield from members
            made += size

    def _head(self, household: str, residence: str) -> GeneratedPerson:
        """A household's head: an adult, alive."""
        sex = self._rng.choice(("male", "female"))
        return self._person(household, residence, sex=sex, adult=True, head=True)

    def _second(self, household: str, residence: str, head: GeneratedPerson) -> GeneratedPerson:
        """The second member: mostly the head's adult spouse, else anyone."""
        if self._rng.random() >= _SPOUSE_SHARE:
            return self._person(household, residence)
        sex = "female" if head.population["sex"] == "male" else "male"
        return self._person(household, residence, sex=sex, adult=True)

    def _marry(self, a: GeneratedPerson, b: GeneratedPerson) -> None:
        """Make ``a`` and ``b`` a married couple, with a marriage act, if they can be one:
        of opposite sex, both alive and of the legal age on a day no later than TODAY."""
        rows = (a.population, b.population)
        if rows[0]["sex"] == rows[1]["sex"] or any(r["date_of_death"] for r in rows):
            return
        earliest = max(
            _years_after(date.fromisoformat(r["birth_date"]), _MARRIAGE_AGE[r["sex"]]) for r in rows
        )
        if earliest > TODAY:
            return
        married_on = earliest + timedelta(
            days=self._rng.randrange(min((TODAY - earliest).days, 15 * 365) + 1)
        )
        for person, spouse in ((a, b), (b, a)):
            for row in (person.civil, person.population):
                row["marital_status"], row["spouse"] = "married", spouse.pin
        a.marriage_act = {
            **self._act(married_on, a.population["permanent_residence"], a.civil["hometown"]),
            "spouse_a_pin": a.pin,
            "spouse_b_pin": b.pin,
            "married_on": married_on.isoformat(),
        }

    def _act(self, on: date, *places: str) -> dict[str, Any]:
        """The columns every act has: book, number, date, and the registering commune: the
        first of ``places`` recorded in the code list in force ``on`` that day; after the
        reform, else the 2025 unit the first derives to."""
        recorded = [json.loads(place) for place in places]
        wanted = str(CodeList.Y2025 if on >= REFORM else CodeList.PRE_2025)
        commune = next((r for r in recorded if r["code_list"] == wanted), None)
        if commune is None and on >= REFORM:
            current = recorded[0]["current"]
            code = current["ward_code"] if current else self._draws[CodeList.Y2025](self._rng)
            commune = {"code": code, "code_list": wanted}
        commune = commune or recorded[0]
        return {
            "book": f"{on.year}",
            "number": f"{self._rng.randrange(10**7):07d}",
            "registered_on": on.isoformat(),
            "commune_code": commune["code"],
            "commune_code_list": commune["code_list"],
        }

    def _person(
        self,
        household: str,
        residence: str,
        *,
        sex: str | None = None,
        adult: bool = False,
        head: bool = False,
        family: str | None = None,
        after: date | None = None,
    ) -> GeneratedPerson:
        rng = self._rng
        sex = sex or rng.choice(("male", "female"))
        born = self._birth_date(adult=adult, after=after)
        registered = born + timedelta(days=rng.randrange(1, 60))
        birthplace = self._birthplace(registered)
        pin = self._pin(birthplace, born, sex)
        family = family or _weighted(rng, _FAMILY_NAMES)
        born_at = place_value(birthplace)
        shared: dict[str, str | None] = {
            "full_name": self._name(sex, family),
            "birth_date": born.isoformat(),
            "sex": sex,
            "place_of_birth": born_at,
            "hometown": place_value(self._place(CodeList.PRE_2025)),
            "ethnicity": _weighted(rng, _ETHNICITIES),
            "nationality": "Việt Nam",
            "marital_status": "single",
            "spouse": None,
            "date_of_death": None,
            "permanent_residence": residence,
        }
        civil = {
            "pin": pin,
            **shared,
            "father": self._name("male", family),
            "mother": self._name("female", _weighted(rng, _FAMILY_NAMES)),
        }
        population = {
            "pin": pin,
            **shared,
            "religion": _weighted(rng, _RELIGIONS),
            "household": household,
            "relation_to_head": "head" if head else "member",
        }
        birth_act = {
            **self._act(registered, born_at),
            "pin": pin,
            **{k: civil[k] for k in BIRTH_FIELDS},
        }
        person = GeneratedPerson(pin, civil, population, household, birth_act)
        if not head:
            self._die(person, born, residence)
        if rng.random() < self._legacy:
            person.legacy = True
            partial = born.isoformat()[: 7 if rng.random() < _LEGACY_MONTH_SHARE else 4]
            civil["birth_date"], civil["sex"] = partial, "unknown"
            birth_act |= {"pin": None, "birth_date": partial, "sex": "unknown"}
        if rng.random() < self._mismatch:
            person.mismatch = rng.choice(_MISMATCHED_FIELDS)
            population[person.mismatch] = self._differing(person.mismatch, population)
        else:
            self._vary(person)
        return person

    def _vary(self, person: GeneratedPerson) -> None:
        """Maybe let the population copy record one value equal to civil-status's another way
        (``_VARIANTS``, in their order, each where it changes how the value is written)."""
        row = person.population
        name = row["full_name"]
        ways = {
            "tone marks": ("full_name", old_style_tones(name)),
            "look-alike letter": ("full_name", name.replace("Đ", "\u00d0")),
            "code list": ("permanent_residence", self._other_list(row["permanent_residence"])),
        }
        for kind, weight in _VARIANTS.items():
            field, value = ways[kind]
            if value not in (None, row[field]) and self._rng.random() < weight * self._variants:
                person.variant, row[field] = kind, value
                return

    def _other_list(self, place: str) -> str | None:
        """A pre-2025 place recorded again as the 2025 unit it derives to; None for another."""
        recorded = json.loads(place)
        current = recorded["current"]
        if recorded["code_list"] != CodeList.PRE_2025 or current is None:
            return None
        code = current["ward_code"]
        unit = self._places.current[code]
        return place_value(self._places.derive(Place(unit.name, CodeList.Y2025, ward_code=code)))

    def _reissue(self, person: GeneratedPerson) -> None:
        """Maybe give ``person`` a re-issued PIN after a correction of the sex or the birth
        year: only someone alive, unmarried, recorded in full and alike in both stores."""
        row = person.population
        if (
            person.legacy
            or person.mismatch
            or person.variant
            or row["date_of_death"]
            or row["spouse"]
            or self._rng.random() >= self._reissued
        ):
            return
        reason = _weighted(self._rng, _REISSUE_REASONS)
        born, sex = date.fromisoformat(row["birth_date"]), row["sex"]
        if reason == "sex_redetermination":
            field, old, new = "sex", sex, "female" if sex == "male" else "male"
            sex = new
        else:  # a year earlier: never later than the day, an adult stays one
            born = _years_after(born, -1)
            field, old, new = "birth_date", row["birth_date"], born.isoformat()
        earliest = date.fromisoformat(person.birth_act["registered_on"]) + timedelta(days=1)
        earliest = max(earliest, TODAY - timedelta(days=_REISSUED_WITHIN))
        changed_on = earliest + timedelta(days=self._rng.randrange((TODAY - earliest).days + 1))
        correction = {
            **self._act(changed_on, row["permanent_residence"], person.civil["hometown"]),
            "pin": person.pin,
            "corrects": "birth_registration",
            "field": field,
            "old_value": old,
            "new_value": new,
            "reason": reason.replace("_", " "),
        }
        new_pin = self._new_pin(person.pin[1:3], born, sex)
        person.reissue = PinReissue(person.pin, new_pin, changed_on.isoformat(), reason, correction)

    def _name(self, sex: str, family: str) -> str:
        faker = self._faker
        given = faker.first_name_male() if sex == "male" else faker.first_name_female()
        middle = _weighted(self._rng, _MIDDLE_NAMES[sex])
        return unicodedata.normalize("NFC", f"{family} {middle} {given}")

    def _birth_date(self, *, adult: bool, after: date | None) -> date:
        """A birth date drawn from the population pyramid; an adult's is 18 years before
        TODAY or earlier; a child's, if it can be, ``after`` (its parents' 18th birthday).
        Draws that miss are drawn again, a child's at most ``_CHILD_DRAWS`` times."""
        latest = _years_after(TODAY, -_ADULT) if adult else _LAST_BIRTH
        for attempt in itertools.count():
            first, last = _weighted(self._rng, _BIRTH_BANDS)
            start, end = date(first, 1, 1), min(date(last, 12, 31), _LAST_BIRTH)
            born = start + timedelta(days=self._rng.randrange((end - start).days + 1))
            if born <= latest and (after is None or born >= after or attempt >= _CHILD_DRAWS):
                return born
        raise AssertionError("unreachable")  # pragma: no cover - itertools.count is endless

    def _die(self, person: GeneratedPerson, born: date, residence: str) -> None:
        """Maybe let ``person`` have died, by the share of their age, with a death act."""
        age = (TODAY - born).days // 365
        share = next(s for floor, s in _DEATH_SHARES.items() if age >= floor)
        if self._rng.random() >= share:
            return
        earliest = max(born + timedelta(days=1), TODAY - timedelta(days=_DEATHS_WITHIN))
        latest = TODAY - timedelta(days=30)  # registered within 30 days, by TODAY
        if earliest > latest:
            return
        died = earliest + timedelta(days=self._rng.randrange((latest - earliest).days + 1))
        for row in (person.civil, person.population):
            row["date_of_death"] = died.isoformat()
        registered = died + timedelta(days=self._rng.randrange(1, 30))
        person.death_act = {
            **self._act(registered, residence, person.civil["hometown"]),
            "pin": person.pin,
            "date_of_death": died.isoformat(),
            "place_of_death": residence,
        }

    def _differing(self, name: str, row: dict[str, Any]) -> Any:
        value = row[name]
        if name == "full_name":
            return without_diacritics(value)
        if name == "birth_date":  # a day off, within the year the PIN gives
            born = date.fromisoformat(value)
            day = timedelta(days=1)
            return (born - day if (born + day).year != born.year else born + day).isoformat()
        if name == "permanent_residence":
            return self.residence()
        return "Kinh" if value != "Kinh" else "Mường"

    def residence(self) -> str:
        """A residence place value: a pre-2025 or a 2025 unit, drawn by population."""
        if self._rng.random() < _OLD_RESIDENCE_SHARE:
            return place_value(self._place(CodeList.PRE_2025))
        return place_value(self._place(CodeList.Y2025))

    def _birthplace(self, registered: date) -> Place:
        """Where a birth registered on ``registered`` was: a unit of the list then in force."""
        if registered >= REFORM:
            return self._place(CodeList.Y2025)
        return self._place(CodeList.PRE_2025)

    def _place(self, code_list: CodeList) -> Place:
        """A unit of ``code_list``, its province drawn by population, derived."""
        code = self._draws[code_list](self._rng)
        if code_list is CodeList.Y2025:
            text = self._places.current[code].name
        else:
            text = self._places.pre_2025[code].name
        return self._places.derive(Place(text, code_list, ward_code=code))

    def _pin(self, birthplace: Place, born: date, sex: str) -> str:
        """A new PIN: the province of the birth registration (for a birth registered under the
        2025 list, its province's code, which is one of the 63 earlier codes), century and
        sex, year, and a serial no PIN has used."""
        code = birthplace.ward_code
        assert code is not None  # noqa: S101 - drawn from the ward lists
        if birthplace.code_list is CodeList.Y2025:
            province = self._places.current[code].province_code
        else:
            province = self._places.pre_2025[code].province_code
        return self._new_pin(province, born, sex)

    def _new_pin(self, province: str, born: date, sex: str) -> str:
        """A PIN no one has: ``province`` (two digits), century and sex, year, a serial."""
        century_sex = 2 * ((born.year - 1900) // 100) + (sex == "female")
        while True:
            pin = f"0{province}{century_sex}{born.year % 100:02d}{self._rng.randrange(10**6):06d}"
            if pin not in self._pins:
                self._pins.add(pin)
                return pin


def _weighted(rng: random.Random, shares: Mapping[_T, float]) -> _T:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _family_of(members: list[GeneratedPerson]) -> str:
    """The family name the household's children take: the father's, else the head's."""
    men = [p for p in members if p.population["sex"] == "male"]
    full_name: str = (men or members)[0].civil["full_name"]
    return full_name.split(maxsplit=1)[0]


def _years_after(day: date, years: int) -> date:
    """The same day ``years`` later (earlier if negative); 28 February for a 29th."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)
