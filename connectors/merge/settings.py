"""Settings of the merger: which tables carry person fields, and the field policies.

The defaults are the person profile of this release: ``public.person`` in the civil-status
store and ``public.citizen`` in the population store, keyed by PIN, and the authority
policy of DESIGN.md. A file can remap tables and override any field's rule:

    [merge.policy.religion]
    rule = "lww"
"""

from __future__ import annotations

from collections.abc import Mapping
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
    store: Literal["civil", "population"]
    table: str = Field(pattern=r"^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$")
    person_column: str
    columns: dict[str, str] = Field(description="shared field -> column")

    def mapping(self) -> TableMapping:
        return TableMapping(self.store, self.table, self.person_column, dict(self.columns))


class FieldPolicySettings(_Frozen):
    rule: Rule
    authority: Literal["civil", "population"] | None = None

    def policy(self) -> FieldPolicy:
        return FieldPolicy(self.rule, self.authority)

    @model_validator(mode="after")
    def _authority_only_for_authority(self) -> Self:
        self.policy()  # raises ValueError, reported by pydantic with the field's path
        return self


DEFAULT_TABLES = (
    TableMappingSettings(
        store=CIVIL,
        table="public.person",
        person_column="pin",
        columns={name: name for name in _CIVIL_COLUMNS},
    ),
    TableMappingSettings(
        store=POPULATION,
        table="public.citizen",
        person_column="pin",
        columns={name: name for name in _POPULATION_COLUMNS},
    ),
)


class MergeSettings(_Frozen):
    """The merger's consumer group, partitions, batches, table mappings and policies."""

    group: str = "civsync-merger"
    topic_prefix: str = Field(default="civsync", pattern=r"^[A-Za-z0-9._-]+$")
    partitions: int = Field(default=12, ge=1, description="partitions of the merger's topics")
    batch: int = Field(default=2000, ge=1, description="records per Kafka transaction, at most")
    tables: tuple[TableMappingSettings, ...] = DEFAULT_TABLES
    policy: dict[str, FieldPolicySettings] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_mapped_field_has_a_policy(self) -> Self:
        policies = self.policies()
        for table in self.tables:
            missing = sorted(set(table.columns) - set(policies))
            if missing:
                raise ValueError(f"{table.store} {table.table}: no policy for {missing}")
        return self

    def policies(self) -> Mapping[str, FieldPolicy]:
        overrides = {name: rule.policy() for name, rule in self.policy.items()}
        return {**DEFAULT_POLICY, **overrides}

    def mappings(self) -> tuple[TableMapping, ...]:
        return tuple(table.mapping() for table in self.tables)
