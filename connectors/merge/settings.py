"""Settings of the merger: which tables carry person fields, and the field policies.

The defaults are the person profile of this release (docs/stores.md): in the civil-status
store ``public.person`` and the registrations (birth, marriage, death, correction); in the
population store ``public.citizen``, the PIN history and the birth notifications; the
authority policy of docs/design.md. A file can remap tables and override any field's rule:

    [merge.policy.religion]
    rule = "lww"
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.mapping import TableMapping
from engine.policy import (
    CIVIL,
    CIVIL_FIELDS,
    DEFAULT_POLICY,
    POPULATION,
    POPULATION_FIELDS,
    FieldPolicy,
    Rule,
)
from engine.step import KeyKind

# The profile's tables. Civil-status records the permanent residence on its acts as well;
# the population store has no parents' names, and neither table holds the PIN as a field
# (it is the person key) or the ID cards.
_CIVIL_COLUMNS = (*CIVIL_FIELDS, "permanent_residence")
_POPULATION_COLUMNS = tuple(
    name
    for name in (*CIVIL_FIELDS, *POPULATION_FIELDS)
    if name not in {"father", "mother", "pin", "id_cards"}
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TableMappingSettings(_Frozen):
    """One way a table describes a person; ``engine.mapping.TableMapping`` says what each
    setting means. ``apply``: the sink writes merged people into this table."""

    store: Literal["civil", "population"]
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    person_column: str
    columns: dict[str, str] = Field(default_factory=dict, description="shared field -> column")
    local_key: str | None = None
    constants: dict[str, str] = Field(default_factory=dict)
    field_column: str | None = None
    value_column: str | None = None
    link_column: str | None = None
    unknown: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    keys: Literal["pin", "provisional"] = "pin"
    apply: bool = True

    def mapping(self) -> TableMapping:
        return TableMapping(
            self.store,
            self.table,
            self.person_column,
            dict(self.columns),
            local_key=self.local_key,
            constants=dict(self.constants),
            field_column=self.field_column,
            value_column=self.value_column,
            link_column=self.link_column,
            unknown=dict(self.unknown),
            keys=self.keys,
            apply=self.apply,
        )

    @model_validator(mode="after")
    def _corrections_name_both_columns(self) -> Self:
        if (self.field_column is None) != (self.value_column is None):
            raise ValueError("field_column and value_column go together")
        return self


class FieldPolicySettings(_Frozen):
    rule: Rule
    authority: Literal["civil", "population"] | None = None

    def policy(self) -> FieldPolicy:
        return FieldPolicy(self.rule, self.authority)

    @model_validator(mode="after")
    def _authority_only_for_authority(self) -> Self:
        self.policy()  # raises ValueError, reported by pydantic with the field's path
        return self


# What a birth act records about the child (schemas/sql/civil), field and column alike.
BIRTH_FIELDS = (
    "full_name",
    "birth_date",
    "sex",
    "place_of_birth",
    "father",
    "mother",
    "ethnicity",
    "nationality",
)
_UNKNOWN_SEX = {"sex": ("unknown",)}  # legacy books: no value, never a third sex


def _marriage(spouse: str, other: str) -> TableMappingSettings:
    """A marriage act as it describes one spouse: married, to the other."""
    return TableMappingSettings(
        store=CIVIL,
        table="public.marriage_registration",
        person_column=f"spouse_{spouse}_pin",
        local_key=f"spouse_{spouse}_id",
        columns={"spouse": f"spouse_{other}_pin"},
        constants={"marital_status": "married"},
        apply=False,
    )


DEFAULT_TABLES = (
    TableMappingSettings(
        store=CIVIL,
        table="public.person",
        person_column="pin",
        local_key="id",
        columns={name: name for name in _CIVIL_COLUMNS},
        unknown=_UNKNOWN_SEX,
    ),
    TableMappingSettings(
        store=CIVIL,
        table="public.birth_registration",
        person_column="pin",
        local_key="person_id",
        columns={name: name for name in BIRTH_FIELDS},
        unknown=_UNKNOWN_SEX,
        apply=False,
    ),
    _marriage("a", "b"),
    _marriage("b", "a"),
    TableMappingSettings(
        store=CIVIL,
        table="public.death_registration",
        person_column="pin",
        local_key="person_id",
        columns={"date_of_death": "date_of_death"},
        apply=False,
    ),
    TableMappingSettings(
        store=CIVIL,
        table="public.correction",
        person_column="pin",
        local_key="person_id",
        field_column="field",
        value_column="new_value",
        apply=False,
    ),
    TableMappingSettings(
        store=POPULATION,
        table="public.citizen",
        person_column="pin",
        columns={name: name for name in _POPULATION_COLUMNS},
    ),
    TableMappingSettings(
        store=POPULATION,
        table="public.pin_history",
        person_column="old_pin",
        link_column="new_pin",
        apply=False,
    ),
    # The population store's inbox of births registered without a PIN: the sink files the
    # provisional person there, the population store issues the PIN, and that is a link.
    TableMappingSettings(
        store=POPULATION,
        table="public.birth_notification",
        person_column="civil_person",
        link_column="pin",
        columns={name: name for name in BIRTH_FIELDS},
        keys="provisional",
    ),
)
# What a person needs before civsync.person carries it, by kind of key: the population
# store issues a PIN from the sex and the birth year, so a birth without a PIN needs them.
DEFAULT_REQUIRED: dict[KeyKind, tuple[str, ...]] = {
    "pin": (),
    "provisional": ("full_name", "birth_date", "sex"),
}


class MergeSettings(_Frozen):
    """The merger's consumer group, partitions, batches, table mappings and policies."""

    group: str = "civsync-merger"
    topic_prefix: str = Field(default="civsync", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=12, ge=1, description="partitions of the merger's topics")
    batch: int = Field(default=2000, ge=1, description="records per Kafka transaction, at most")
    state_dir: Path = Field(
        default=Path(".civsync/state"),
        description="where each merger keeps its RocksDB state: <state_dir>/<group>/<instance>",
    )
    cache_people: int = Field(
        default=5_000, ge=0, description="people a merger keeps decoded in memory"
    )
    lock_timeout_ms: int = Field(
        default=500,
        ge=1,
        description="the longest a sink waits for a row lock; under the store's deadlock_timeout",
    )
    tables: tuple[TableMappingSettings, ...] = DEFAULT_TABLES
    policy: dict[str, FieldPolicySettings] = Field(default_factory=dict)
    required: dict[KeyKind, tuple[str, ...]] = Field(default_factory=lambda: dict(DEFAULT_REQUIRED))

    @model_validator(mode="after")
    def _every_mapped_field_has_a_policy(self) -> Self:
        policies = self.policies()
        for table in self.tables:
            missing = sorted({*table.columns, *table.constants} - set(policies))
            if missing:
                raise ValueError(f"{table.store} {table.table}: no policy for {missing}")
        return self

    def policies(self) -> Mapping[str, FieldPolicy]:
        overrides = {name: rule.policy() for name, rule in self.policy.items()}
        return {**DEFAULT_POLICY, **overrides}

    def mappings(self) -> tuple[TableMapping, ...]:
        return tuple(table.mapping() for table in self.tables)

    def person_tables(self) -> list[TableMapping]:
        """The tables of people by PIN that sinks write: ``public.person`` and
        ``public.citizen`` in the profile; what reconcile compares and remap re-derives."""
        return [m for m in self.mappings() if m.apply and m.keys == "pin"]
