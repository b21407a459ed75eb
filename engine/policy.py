"""Field policies: who decides a shared field's value when the two stores disagree.

``authority``: the authoritative store's value wins; a newer differing edit on the other
store is a conflict held for a steward. ``lww``: the latest edit by hybrid logical clock wins,
ties broken by node and event id, the same in every process. ``manual``: every change that
differs from the current value is held for a steward.
The default policy is the one in the product contract (docs/design.md, Fields and authority).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

CIVIL, POPULATION, STEWARD = "civil", "population", "steward"


class Rule(enum.StrEnum):
    AUTHORITY = "authority"
    LWW = "lww"
    MANUAL = "manual"


@dataclass(frozen=True)
class FieldPolicy:
    rule: Rule
    authority: str | None = None  # the authoritative store, for Rule.AUTHORITY

    def __post_init__(self) -> None:
        if (self.rule is Rule.AUTHORITY) != (self.authority in (CIVIL, POPULATION)):
            raise ValueError(f"{self.rule} policy needs an authoritative store only for authority")


CIVIL_FIELDS = (
    "full_name",
    "birth_date",
    "sex",
    "place_of_birth",
    "hometown",
    "ethnicity",
    "nationality",
    "father",
    "mother",
    "marital_status",
    "spouse",
    "date_of_death",
)
POPULATION_FIELDS = (
    "pin",
    "permanent_residence",
    "temporary_residence",
    "current_residence",
    "household",
    "religion",
    "id_cards",
)

DEFAULT_POLICY: Mapping[str, FieldPolicy] = {
    **{name: FieldPolicy(Rule.AUTHORITY, CIVIL) for name in CIVIL_FIELDS},
    **{name: FieldPolicy(Rule.AUTHORITY, POPULATION) for name in POPULATION_FIELDS},
}
