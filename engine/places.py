"""Places as values, and their current (post-2025) unit derived from the code they carry.

A place keeps the text as recorded and the codes **with the code list they belong to**: new
commune codes reuse old ones, so a bare code is ambiguous. The current unit is derived, with
a quality saying how it was derived. The as-recorded part is never changed:

- ``unchanged``: the old ward became one new ward on its own;
- ``merged``: it was merged with others into one new ward;
- ``split-default``: it was split; the default successor is taken and a steward should check;
- ``resolved``: a steward chose the successor; derivation keeps that choice;
- ``ambiguous``: it was split and no successor is marked default;
- ``unmappable``: the unit has no successor (island districts without wards).

A code that is in neither list raises ``UnknownPlaceCode`` naming it, so the record can be
quarantined. ``PlaceMap`` is built from published data (``connectors.place_data``); never
from a geocoder.

Two place values are the same place when they derive to the same current unit, whichever
list each was recorded in (``comparison_key``; ``engine.normal`` compares by it).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
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
    """Whether a place value, as stored (JSON text), took a split ward's default successor,
    which a steward should confirm or change."""
    if not isinstance(value, str) or Quality.SPLIT_DEFAULT not in value:
        return False  # the common case, decided without parsing
    try:
        document = json.loads(value)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("quality") == Quality.SPLIT_DEFAULT


@lru_cache(maxsize=65_536)
def comparison_key(value: str) -> tuple[str | None, ...]:
    """What a place value, as stored (JSON text), is compared by: ``("unit", ward code)`` of
    the current unit it derives to (its ``current``, or its own code if recorded in the 2025
    list, where ``PlaceMap.derive`` takes the unit of that code); else what was recorded,
    ``("recorded", code list, code)``, or ``("text", text)`` for a place with no code."""
    try:
        document = json.loads(value)
    except ValueError:
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
    PRE_2025 = "pre-2025"
    Y2025 = "2025"


class Quality(enum.StrEnum):
    UNCHANGED = "unchanged"
    MERGED = "merged"
    SPLIT_DEFAULT = "split-default"
    RESOLVED = "resolved"
    AMBIGUOUS = "ambiguous"
    UNMAPPABLE = "unmappable"


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
    code_list: CodeList
    ward_code: str | None = None
    district_code: str | None = None  # pre-2025 only; island districts have no wards
    province_code: str | None = None
    current: Unit | None = None
    quality: Quality | None = None


class UnknownPlaceCode(ValueError):  # noqa: N818 - a finding about input, named for it
    """The code is not in its code list."""

    def __init__(self, code: str, code_list: CodeList) -> None:
        super().__init__(f"unknown {code_list} place code {code}")
        self.code, self.code_list = code, code_list


@dataclass(frozen=True)
class Successors:
    """A pre-2025 unit (name, province code) and where it went: the new units, the default
    one, and whether the new unit (when there is one) was formed from this unit alone."""

    units: tuple[Unit, ...]
    default: Unit | None
    alone: bool = False
    name: str = ""
    province_code: str = ""


@dataclass(frozen=True)
class PlaceMap:
    """Old-to-new mapping by code. ``pre_2025`` is keyed by ward code, and by district code
    for the island districts that have no wards; ``current`` by 2025 ward code."""

    pre_2025: Mapping[str, Successors]
    current: Mapping[str, Unit]

    def derive(self, place: Place) -> Place:
        """``place`` with its current unit and quality; UnknownPlaceCode if its code is not in
        its code list. A steward's resolution is kept."""
        if place.quality is Quality.RESOLVED:
            return place
        code = place.ward_code or place.district_code
        if code is None:
            raise UnknownPlaceCode("(none)", place.code_list)
        if place.code_list is CodeList.Y2025:
            unit = self.current.get(code)
            if unit is None:
                raise UnknownPlaceCode(code, place.code_list)
            return replace(place, current=unit, quality=Quality.UNCHANGED)
        successors = self.pre_2025.get(code)
        if successors is None:
            raise UnknownPlaceCode(code, place.code_list)
        if not successors.units:
            return replace(place, current=None, quality=Quality.UNMAPPABLE)
        if len(successors.units) == 1:
            quality = Quality.UNCHANGED if successors.alone else Quality.MERGED
            return replace(place, current=successors.units[0], quality=quality)
        if successors.default is None:
            return replace(place, current=None, quality=Quality.AMBIGUOUS)
        return replace(place, current=successors.default, quality=Quality.SPLIT_DEFAULT)

    def resolve(self, place: Place, ward_code: str) -> Place:
        """A steward's choice of successor for a split or ambiguous place."""
        unit = self.current.get(ward_code)
        if unit is None:
            raise UnknownPlaceCode(ward_code, CodeList.Y2025)
        return replace(place, current=unit, quality=Quality.RESOLVED)
