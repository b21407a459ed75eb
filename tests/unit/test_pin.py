"""PIN checks: the layout is a hard rule, everything else a warning that names no personal data."""

from __future__ import annotations

import pytest

from connectors.place_data import pre_2025_province_codes
from engine.pin import Severity, check_pin, registered_abroad

PROVINCES = pre_2025_province_codes()


def _codes(pin: str, **person: str) -> list[str]:
    return [f.code for f in check_pin(pin, provinces=PROVINCES, **person)]


def test_the_63_pre_2025_provinces_come_from_the_place_data() -> None:
    assert len(PROVINCES) == 63
    assert {"01", "79", "96"} <= PROVINCES  # Hà Nội, Hồ Chí Minh City, Cà Mau
    assert "03" not in PROVINCES


@pytest.mark.parametrize(
    ("pin", "birth_date", "sex"),
    [
        ("001090000001", "1990-01-02", "male"),  # Hà Nội, 1900s male, 1990
        ("079305123456", "2005", "female"),  # Hồ Chí Minh City, 2000s female, year only
        ("096200000000", "2000-07", "male"),
    ],
)
def test_a_pin_that_fits_the_person_has_no_findings(pin: str, birth_date: str, sex: str) -> None:
    assert _codes(pin, birth_date=birth_date, sex=sex) == []


@pytest.mark.parametrize(
    "pin",
    [
        "00109000000",
        "0010900000012",
        "00109000000A",
        "",
        " 01090000001",
        "001090000001\n",  # a regex ``$`` takes a trailing newline; the store does not
        "".join(chr(0xFF10 + int(d)) for d in "001090000001"),  # full-width digits
        "".join(chr(0x0660 + int(d)) for d in "001090000001"),  # Arabic-Indic digits
    ],
)
def test_a_pin_that_is_not_twelve_digits_is_quarantined(pin: str) -> None:
    findings = check_pin(pin, birth_date="1990", sex="male", provinces=PROVINCES)
    assert [(f.code, f.severity) for f in findings] == [("pin.malformed", Severity.QUARANTINE)]


def test_layout_mismatches_are_warnings() -> None:
    findings = check_pin("003191000001", birth_date="1990", sex="male", provinces=PROVINCES)
    assert {f.code for f in findings} == {
        "pin.unknown_province",  # 003 was never a province code
        "pin.birth_year_mismatch",  # the PIN says 1991
        "pin.sex_mismatch",  # the PIN's 1 says female
    }
    assert {f.severity for f in findings} == {Severity.WARNING}


def test_the_century_digit_is_checked_not_only_the_year() -> None:
    assert _codes("001290000001", birth_date="1990") == ["pin.birth_year_mismatch"]  # 2090


def test_a_birth_year_in_other_digits_is_not_read_as_a_year() -> None:
    # read as 1985 it would disagree with the PIN's 1990; it is no year at all
    arabic_indic = "".join(chr(0x0660 + int(d)) for d in "1985")
    assert check_pin("001090000001", birth_date=arabic_indic, sex="male", provinces=PROVINCES) == []


def test_unknown_sex_and_missing_birth_dates_are_not_checked() -> None:
    assert _codes("001190000001", sex="unknown") == []
    assert _codes("001190000001", birth_date="19??") == []


def test_findings_never_repeat_the_pin_or_the_birth_date() -> None:
    for finding in check_pin(
        "003191000001", birth_date="1990-05-06", sex="male", provinces=PROVINCES
    ):
        assert "003191000001" not in finding.detail
        assert "1990" not in finding.detail
        assert "1991" not in finding.detail


@pytest.mark.parametrize("pin", ["001090000001\n", "001090000001\r\n", "\n001090000001"])
def test_full_match_a_pin_with_a_line_break_is_malformed(pin: str) -> None:
    assert _codes(pin, birth_date="1990", sex="male") == ["pin.malformed"]


@pytest.mark.parametrize("pin", ["175090000001", "232305123456", "284190000001"])
def test_a_birth_registered_abroad_has_a_country_code_and_no_province_warning(pin: str) -> None:
    """Decree 137/2015/ND-CP, art. 13: the first three digits are the code of the country
    where the birth was registered, which does not start with 0 as province codes do; the
    century, year and sex digits are checked as for anyone."""
    assert registered_abroad(pin)
    birth_date = "2005-03-01" if pin[3] in "23" else "1990-03-01"
    sex = "female" if int(pin[3]) % 2 else "male"
    assert _codes(pin, birth_date=birth_date, sex=sex) == []
    assert _codes(pin, birth_date="1970", sex=sex) == ["pin.birth_year_mismatch"]


def test_a_province_code_is_not_a_country_code() -> None:
    assert not registered_abroad("001090000001")
    assert not registered_abroad("003090000001")  # 003 is no province, and no country either
