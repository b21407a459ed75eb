"""Places as values, and their current (post-2025) unit derived from the code they carry.

A place keeps the text as recorded and the codes **with the code list they belong to**: new
commune codes reuse old ones, so a bare code may be ambiguous. The code lists (epochs) are
``pre-2023`` (the GSO list of 2021-2023, of which only the units retired by early 2025 and the
codes added since are carried), ``pre-2025`` (the early-2025 list) and ``2025``. The current
unit is derived, with a quality saying how it was derived. The as-recorded part is never
changed:

- ``unchanged``: the old ward became one new ward on its own;
- ``merged``: it was merged with others into one new ward;
- ``split-default``: it was split; the default successor is taken and a steward should check;
- ``derived-by-name``: a unit retired before the early-2025 list, whose early-2025 successor
  was found by its name (not by an authoritative mapping); a steward should check;
- ``resolved``: a steward chose the successor; derivation keeps that choice;
- ``ambiguous``: it was split and no successor is marked default, or its code was recorded
  without a code list and reads as different units in two lists;
- ``unresolved``: no list the project has resolves its code (a code retired in 2019-2021, a
  retired code whose successor no name gives, a mistyped code, or no code): the text as
  recorded is all there is;
- ``unmappable``: the unit has no successor (island districts without wards).

A place with a code but no code list is read in each list that has the code: it derives as
that unit when every reading gives the same current unit (with the less certain quality of
the readings), else it is ``ambiguous``. A code recorded in the ``pre-2025`` list that the
early-2025 list does not have, but the ``pre-2023`` list has (retired in 2023-25; codes were
not reused before 2025), is read in the ``pre-2023`` list. ``split-default``,
``derived-by-name``, ``ambiguous`` and ``unresolved`` are for a steward (``for_steward``): the
merger opens a ``review`` for them, never a quarantine. ``PlaceMap`` is built from published
data (``connectors.place_data``); never from a geocoder.

Two place values are the same place when they derive to the same current unit, whichever
list each was recorded in (``comparison_key``; ``engine.normal`` compares by it).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache

# The shared fields whose values are places.
PLACE_FIELDS = frozenset(
    {
        "place_of_birth",
        "hometown",
        "permanent_residence",
        "temporary_residence",
        "current_residence",
    }
)


def for_steward(value: object) -> bool:
    """Whether a place value, as stored (JSON text), is one a steward should confirm or
    choose: a split ward's default successor, a successor found by name, an ambiguous or an
    unresolved place."""
    if not isinstance(value, str) or not any(quality in value for quality in FOR_STEWARD):
        return False  # the common case, decided without parsing
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested past the interpreter's limit
        return False
    quality = document.get("quality") if isinstance(document, dict) else None
    return isinstance(quality, str) and quality in FOR_STEWARD  # not a list or an object


def recorded_place(document: Mapping[str, object]) -> Place:
    """The recorded part of a stored place value (its JSON object): text, code and code list.
    A code list the project does not have, or none, is read as none: the code is then read
    in every list that has it (``PlaceMap.derive``)."""
    text, code, code_list = (document.get(k) for k in ("text", "code", "code_list"))
    return Place(
        text if isinstance(text, str) else None,
        next((known for known in CodeList if known == code_list), None),
        ward_code=code if isinstance(code, str) else None,
    )


@lru_cache(maxsize=65_536)
def comparison_key(value: str) -> tuple[str | None, ...]:
    """What a place value, as stored (JSON text), is compared by: ``("unit", ward code)`` of
    the current unit it derives to (its ``current``, or its own code if recorded in the 2025
    list, where ``PlaceMap.derive`` takes the unit of that code); else what was recorded,
    ``("recorded", code list, code)``, or ``("text", text)`` for a place with no code."""
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):  # not JSON, or nested past the interpreter's limit
        return ("text", value)
    if not isinstance(document, dict):
        return ("text", value)
    current, code, code_list = (document.get(k) for k in ("current", "code", "code_list"))
    if isinstance(current, dict) and isinstance(current.get("ward_code"), str):
        return ("unit", current["ward_code"])
    if code_list == CodeList.Y2025 and isinstance(code, str):
        return ("unit", code)
    if isinstance(code, str):
        return ("recorded", code_list if isinstance(code_list, str) else None, code)
    text = document.get("text")
    return ("text", text if isinstance(text, str) else None)


class CodeList(enum.StrEnum):
    PRE_2023 = "pre-2023"  # the GSO list of 2021-2023 (10,599 communes)
    PRE_2025 = "pre-2025"  # the early-2025 list, before the 2025 rearrangement
    Y2025 = "2025"


class Quality(enum.StrEnum):
    UNCHANGED = "unchanged"
    MERGED = "merged"
    SPLIT_DEFAULT = "split-default"
    NAME_DERIVED = "derived-by-name"
    RESOLVED = "resolved"
    AMBIGUOUS = "ambiguous"
    UNRESOLVED = "unresolved"
    UNMAPPABLE = "unmappable"


# The qualities a steward should look at: the merger opens a ``review`` for them.
FOR_STEWARD = frozenset(
    {Quality.SPLIT_DEFAULT, Quality.NAME_DERIVED, Quality.AMBIGUOUS, Quality.UNRESOLVED}
)
# From the most certain to the least: a place read in two lists is no more certain than its
# less certain reading.
_CERTAINTY = (
    Quality.UNCHANGED,
    Quality.MERGED,
    Quality.SPLIT_DEFAULT,
    Quality.NAME_DERIVED,
    Quality.AMBIGUOUS,
    Quality.UNMAPPABLE,
    Quality.UNRESOLVED,
)


@dataclass(frozen=True)
class Unit:
    """A commune-level unit of the 2025 list (34 provinces, 3,321 communes)."""

    province_code: str
    ward_code: str
    name: str


@dataclass(frozen=True)
class Place:
    """A place as recorded, and its derived current unit."""

    text: str | None
    code_list: CodeList | None  # None: recorded without one (see ``PlaceMap.derive``)
    ward_code: str | None = None
    district_code: str | None = None  # before 2025 only; island districts have no wards
    province_code: str | None = None
    current: Unit | None = None
    quality: Quality | None = None


class UnknownPlaceCode(ValueError):  # noqa: N818 - a finding about input, named for it
    """A steward chose a unit whose code is not in its code list."""

    def __init__(self, code: str, code_list: CodeList) -> None:
        super().__init__(f"unknown {code_list} place code {code}")
        self.code, self.code_list = code, code_list


@dataclass(frozen=True)
class Successors:
    """A pre-2025 unit (name, province code) and where it went: the new units, the default
    one, and whether the new unit (when there is one) was formed from this unit alone. Its
    validity: the lists before 2025 that have it (the early-2025 one, and the 2021-2023 one
    unless it was formed since)."""

    units: tuple[Unit, ...]
    default: Unit | None
    alone: bool = False
    name: str = ""
    province_code: str = ""
    valid_in: frozenset[CodeList] = frozenset({CodeList.PRE_2025})

    def reading(self) -> tuple[Unit | None, Quality]:
        """The current unit this unit derives to, if one, and the quality."""
        if not self.units:
            return None, Quality.UNMAPPABLE
        if len(self.units) == 1:
            return self.units[0], Quality.UNCHANGED if self.alone else Quality.MERGED
        if self.default is None:
            return None, Quality.AMBIGUOUS
        return self.default, Quality.SPLIT_DEFAULT


@dataclass(frozen=True)
class Retired:
    """A unit of an older list that the early-2025 list no longer has: its name, district and
    province codes as listed, its validity (the lists that have it), and the early-2025 code
    of its successor as found by name (None: no name gives one)."""

    name: str
    district_code: str
    province_code: str
    successor: str | None
    valid_in: frozenset[CodeList] = frozenset({CodeList.PRE_2023})


@dataclass(frozen=True)
class PlaceMap:
    """Old-to-new mapping by code. ``pre_2025`` is keyed by ward code, and by district code
    for the island districts that have no wards; ``current`` by 2025 ward code; ``retired``,
    the units of older lists the early-2025 list no longer has, by ward code."""

    pre_2025: Mapping[str, Successors]
    current: Mapping[str, Unit]
    retired: Mapping[str, Retired] = field(default_factory=dict)

    def lists(self, code: str) -> frozenset[CodeList]:
        """The code lists that have ``code`` (its validity); empty for a code none has."""
        old = self.pre_2025.get(code) or self.retired.get(code)
        valid = old.valid_in if old is not None else frozenset()
        return valid | ({CodeList.Y2025} if code in self.current else set())

    def derive(self, place: Place) -> Place:
        """``place`` with its current unit and quality (see the module); a steward's
        resolution is kept. A code no list resolves is ``unresolved``, never an error."""
        if place.quality is Quality.RESOLVED:
            return place
        code = place.ward_code or place.district_code
        lists = tuple(CodeList) if place.code_list is None else (place.code_list,)
        readings = [r for cl in lists if code and (r := self._reading(code, cl)) is not None]
        if not readings:
            return replace(place, current=None, quality=Quality.UNRESOLVED)
        if len({unit for unit, _ in readings}) > 1:
            return replace(place, current=None, quality=Quality.AMBIGUOUS)
        unit, quality = max(readings, key=lambda reading: _CERTAINTY.index(reading[1]))
        return replace(place, current=unit, quality=quality)

    def _reading(self, code: str, code_list: CodeList) -> tuple[Unit | None, Quality] | None:
        """The current unit and quality of ``code`` read in ``code_list``; None if the list
        does not have it."""
        if code_list is CodeList.Y2025:
            unit = self.current.get(code)
            return None if unit is None else (unit, Quality.UNCHANGED)
        successors = self.pre_2025.get(code)
        if successors is not None and code_list in successors.valid_in:
            return successors.reading()
        retired = self.retired.get(code)
        if retired is None or successors is not None:
            return None
        if retired.successor is None:  # a unit of an older list that no name resolves
            return None, Quality.UNRESOLVED
        successor = self.pre_2025.get(retired.successor)
        if successor is None:  # not in the early-2025 list: the data is not consistent
            return None, Quality.UNRESOLVED
        unit, quality = successor.reading()
        return (None, quality) if unit is None else (unit, Quality.NAME_DERIVED)

    def resolve(self, place: Place, ward_code: str) -> Place:
        """A steward's choice of the current unit of a split, name-derived, ambiguous or
        unresolved place."""
        unit = self.current.get(ward_code)
        if unit is None:
            raise UnknownPlaceCode(ward_code, CodeList.Y2025)
        return replace(place, current=unit, quality=Quality.RESOLVED)
