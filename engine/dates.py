"""Partial dates: a year, a year and month, or a full date, as values with a precision.

Legacy books give ``YYYY`` or ``YYYY-MM``; acts since digitisation give ``YYYY-MM-DD``. A
date is valid only if it is a calendar date (no ``2023-02-29``, no ``2023-04-31``, no month
13). Two dates are *compatible* when they agree on every part both give: ``1985`` and
``1985-03-12``, ``1985-03`` and ``1985-03-12``. The more precise of two compatible dates
says more and contradicts nothing, so the merge keeps it (``engine.merge``); two dates that
disagree on a part both give are a conflict as any other values.
"""

from __future__ import annotations

import calendar
import re
from functools import lru_cache
from typing import NamedTuple

# The shared fields whose values are partial dates.
DATE_FIELDS = frozenset({"birth_date", "date_of_death"})

_MONTHS = 12
_SHAPE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")  # fullmatch: no ``$``


class PartialDate(NamedTuple):
    """A calendar date known to the year, the month or the day."""

    year: int
    month: int | None = None
    day: int | None = None

    @property
    def precision(self) -> int:
        """How many parts are known: 1 (year), 2 (month) or 3 (day)."""
        return 1 + (self.month is not None) + (self.day is not None)

    def compatible(self, other: PartialDate) -> bool:
        """Whether the two agree on every part both give."""
        return all(
            mine == theirs or mine is None or theirs is None
            for mine, theirs in zip(self, other, strict=True)
        )


@lru_cache(maxsize=65_536)
def parse(text: str) -> PartialDate | None:
    """The partial date ``text`` writes (``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``), or None
    if it is not one or is no calendar date."""
    found = _SHAPE.fullmatch(text)
    if found is None:
        return None
    year, month, day = (None if part is None else int(part) for part in found.groups())
    assert year is not None  # noqa: S101 - the pattern requires it
    if year < 1 or (month is not None and not 1 <= month <= _MONTHS):
        return None
    if day is not None and not 1 <= day <= calendar.monthrange(year, month or 1)[1]:
        return None
    return PartialDate(year, month, day)


def precision(value: object) -> int:
    """How many parts the date ``value`` gives; 0 if it is none."""
    parsed = parse(value) if isinstance(value, str) else None
    return 0 if parsed is None else parsed.precision


def refines(candidate: object, standing: object) -> bool:
    """Whether ``candidate`` is a more precise date compatible with ``standing``: it says
    everything ``standing`` says, and more."""
    if not (isinstance(candidate, str) and isinstance(standing, str)):
        return False
    more, less = parse(candidate), parse(standing)
    if more is None or less is None:
        return False
    return more.precision > less.precision and more.compatible(less)


def compatible(a: object, b: object) -> bool:
    """Whether ``a`` and ``b`` are valid dates that agree on every part both give."""
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    first, second = parse(a), parse(b)
    return first is not None and second is not None and first.compatible(second)
