"""Partial dates: calendar validation, precision and compatibility."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.dates import PartialDate, compatible, parse, precision, refines


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1985", PartialDate(1985)),
        ("1985-03", PartialDate(1985, 3)),
        ("1985-03-12", PartialDate(1985, 3, 12)),
        ("2024-02-29", PartialDate(2024, 2, 29)),  # a leap year
        ("2000-02-29", PartialDate(2000, 2, 29)),  # divisible by 400
    ],
)
def test_a_calendar_date_parses_with_its_precision(text: str, parsed: PartialDate) -> None:
    assert parse(text) == parsed
    assert precision(text) == len(text.split("-"))


@pytest.mark.parametrize(
    "text",
    [
        "2023-02-29",  # not a leap year
        "1900-02-29",  # divisible by 100, not by 400
        "2023-04-31",
        "1942-13",
        "1942-00",
        "1942-05-00",
        "0000",
        "85",
        "1985-3-12",
        "1985/03/12",
        "1985-03-12\n",  # fullmatch: a trailing newline is no date
        " 1985",
        "١٩٨٥",  # Arabic-Indic digits
        "",
    ],
)
def test_what_is_no_calendar_date_is_refused(text: str) -> None:
    assert parse(text) is None
    assert precision(text) == 0


def test_compatible_dates_agree_on_every_part_both_give() -> None:
    assert compatible("1985", "1985-03-12")
    assert compatible("1985-03", "1985-03-12")
    assert compatible("1985-03-12", "1985")
    assert not compatible("1985-04", "1985-03-12")
    assert not compatible("1986", "1985-03-12")
    assert not compatible("1985-03-11", "1985-03-12")
    assert not compatible("1985", "1985-02-30")  # no calendar date is compatible with any
    assert not compatible(None, "1985")


def test_only_a_more_precise_compatible_date_refines() -> None:
    assert refines("1985-03-12", "1985")
    assert refines("1985-03", "1985")
    assert refines("1985-03-12", "1985-03")
    assert not refines("1985", "1985-03-12")  # less precise
    assert not refines("1985-03-12", "1985-03-12")  # as precise
    assert not refines("1985-04-12", "1985-03")  # incompatible


days = st.dates().map(lambda d: d.isoformat())


@given(days, st.integers(1, 3))
def test_a_date_is_compatible_with_each_of_its_truncations(day: str, parts: int) -> None:
    truncated = "-".join(day.split("-")[:parts])
    assert compatible(truncated, day)
    assert compatible(day, truncated)
    assert refines(day, truncated) == (parts < 3)
    assert not refines(truncated, day)


@given(days, days)
def test_compatibility_is_symmetric_and_full_dates_are_compatible_only_if_equal(
    a: str, b: str
) -> None:
    assert compatible(a, b) == compatible(b, a) == (a == b)
