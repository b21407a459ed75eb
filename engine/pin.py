"""Checks of a personal identification number (PIN) against its layout and the person.

Layout ``PPP C YY RRRRRR`` (docs/design.md, Identity): PPP the pre-2025 province code of the birth
registration (``0`` + the province's two-digit code, 001-096), or, for a birth registered
abroad, the code of that country (Decree 137/2015/ND-CP, art. 13; the codes are listed
by Circular 07/2016/TT-BCA and do not start with 0); C century and sex (0/1: 1900s
male/female, 2/3: 2000s, 4/5: 2100s, ...), YY the last two digits of the birth year, then six
digits. civsync has no published list of the country codes, so a PPP that does not start
with 0 is read as one and not checked further.

Only the layout itself is a hard rule: a PIN that is not twelve digits (matched in full: a
trailing newline is no digit) cannot identify anyone and is quarantined. Every other
mismatch is reported as a warning and the record flows. Such a mismatch is usually a keying
error on one side, and it ends in a PIN re-issue, not in lost data. Details never repeat the
PIN or the birth date: findings end up in logs.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection
from dataclasses import dataclass

_LAYOUT = re.compile(r"[0-9]{12}")  # fullmatch: ``$`` would take a trailing newline
_CENTURY_BASE = 1900


class Severity(enum.StrEnum):
    QUARANTINE = "quarantine"
    WARNING = "warning"


@dataclass(frozen=True)
class PinFinding:
    """One thing wrong with a PIN: a machine-readable ``code`` and what exactly."""

    code: str
    severity: Severity
    detail: str


def check_pin(
    pin: str,
    *,
    birth_date: str | None = None,
    sex: str | None = None,
    provinces: Collection[str] = (),
) -> list[PinFinding]:
    """Findings for ``pin`` given the person's birth date (``YYYY``, ``YYYY-MM`` or
    ``YYYY-MM-DD``; legacy records may have only the year), sex (``male``/``female``; other
    values are not checked) and the pre-2025 province codes (two digits). None: all good."""
    if not _LAYOUT.fullmatch(pin):
        return [
            PinFinding(
                "pin.malformed",
                Severity.QUARANTINE,
                f"a PIN is 12 digits; got {len(pin)} characters",
            )
        ]
    findings = []
    province, century_sex, year = pin[:3], int(pin[3]), int(pin[4:6])
    if provinces and not registered_abroad(pin) and province[1:] not in provinces:
        findings.append(
            _warning("pin.unknown_province", f"{province} is not a pre-2025 province code")
        )
    century = _CENTURY_BASE + 100 * (century_sex // 2)
    born = _year(birth_date)
    if born is not None and (born // 100 * 100 != century or born % 100 != year):
        findings.append(
            _warning(
                "pin.birth_year_mismatch",
                "the PIN's century and year digits disagree with the recorded birth year",
            )
        )
    encoded_sex = "female" if century_sex % 2 else "male"
    if sex in {"male", "female"} and sex != encoded_sex:
        findings.append(
            _warning(
                "pin.sex_mismatch", "the PIN's century/sex digit disagrees with the recorded sex"
            )
        )
    return findings


def registered_abroad(pin: str) -> bool:
    """Whether a well-formed PIN's first three digits are a country code, not a province's:
    the person's birth was registered abroad."""
    return pin[:1] != "0"


def _warning(code: str, detail: str) -> PinFinding:
    return PinFinding(code, Severity.WARNING, detail)


def _year(birth_date: str | None) -> int | None:
    year = (birth_date or "")[:4]
    return int(year) if len(year) == len("YYYY") and year.isascii() and year.isdigit() else None
