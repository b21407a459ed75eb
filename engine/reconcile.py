"""Comparing the two stores person by person, field by field, in one ordered pass.

Both sides arrive sorted by PIN, so the comparison is a merge join that holds one row of each
side at a time: memory stays flat however many people there are. Values are compared as the
merger compares them (``engine.normal``): two values equal in the normal form, or two places
that derive to the same current unit, are no mismatch. Two compatible dates of different
precision are one: the merger would make both stores hold the more precise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from engine.events import Value
from engine.normal import equivalent

Row = tuple[str, Mapping[str, Value]]  # (PIN, shared field -> value)
MISSING = "(person)"  # the field of a mismatch where one store lacks the person altogether


@dataclass(frozen=True)
class Mismatch:
    """One field of one person on which the stores differ; ``field`` is MISSING when one
    store has no such person (its value is then None)."""

    pin: str
    field: str
    civil: Value
    population: Value


def compare(
    civil: Iterable[Row], population: Iterable[Row], fields: Sequence[str]
) -> Iterator[Mismatch]:
    """Every mismatch between two PIN-ordered sides, in PIN order."""
    left, right = iter(civil), iter(population)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and a[0] < b[0]):
            assert a is not None  # noqa: S101 - b is None or a is smaller
            yield Mismatch(a[0], MISSING, "present", None)
            a = next(left, None)
        elif a is None or b[0] < a[0]:
            yield Mismatch(b[0], MISSING, None, "present")
            b = next(right, None)
        else:
            for name in fields:
                mine, theirs = a[1].get(name), b[1].get(name)
                if not equivalent(name, mine, theirs):
                    yield Mismatch(a[0], name, mine, theirs)
            a, b = next(left, None), next(right, None)
