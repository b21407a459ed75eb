"""The vendored province populations (connectors/data/province_population_2009.json, built by
connectors.place_population from censusVN2009): 63 pre-2025 provinces by code, their total,
the source and its licence; the name matching of the build; its output format.

The full rebuild reads censusVN2009's ``data/communes.rda`` with PyPI ``rdata``, which civsync
does not depend on, so it is not part of the suite: docs/stores.md ("Generated people") gives
the command, whose output must equal the vendored file byte for byte."""

from __future__ import annotations

from importlib import resources

import pytest

from connectors.place_data import pre_2025_province_codes, pre_2025_provinces, province_population
from connectors.place_population import MatchError, document, dump, match

CENSUS_2009 = 85_846_997  # the people the 2009 census counted (GSO)


def test_the_63_provinces_are_the_pre_2025_ones_with_their_names() -> None:
    rows = province_population()["provinces"]
    assert len(rows) == 63
    assert set(rows) == pre_2025_province_codes()
    names = pre_2025_provinces()
    assert all(row["name"] == names[code] for code, row in rows.items())
    assert rows["46"]["source_name"] == "Thừa Thiên Huế"  # Thành phố Huế since 2025


def test_the_total_is_the_sum_of_the_provinces() -> None:
    doc = province_population()
    assert doc["total"] == sum(row["population"] for row in doc["provinces"].values())
    # as censusVN2009's communes give it: 9.7 % below the census count (docs/stores.md)
    assert doc["total"] == 77_501_046
    assert 0.90 < doc["total"] / CENSUS_2009 < 0.91


def test_the_largest_and_a_small_province() -> None:
    rows = province_population()["provinces"]
    largest = sorted(rows, key=lambda code: rows[code]["population"], reverse=True)
    assert largest[:2] == ["01", "79"]  # Hà Nội, Hồ Chí Minh
    assert largest[-1] == "06"  # Bắc Kạn
    assert rows["06"]["population"] < rows["01"]["population"] / 10


def test_the_source_and_its_licence_are_recorded() -> None:
    source = province_population()["source"]
    assert source["package"] == "censusVN2009"
    assert source["repository"] == "https://github.com/choisy/censusVN2009"
    assert (source["licence"], source["copyright_holder"]) == ("MIT", "Marc Choisy")
    assert (source["census_year"], source["boundaries"], source["communes"]) == (2009, 2008, 11163)


def test_the_build_writes_the_vendored_file_from_its_province_sums() -> None:
    """The build's matching and format, from the sums the vendored file records."""
    vendored = province_population()
    sums = {row["source_name"]: float(row["population"]) for row in vendored["provinces"].values()}
    source = vendored["source"]
    rebuilt = dump(document(sums, source["communes"], source["git_blob"], pre_2025_provinces()))
    data = resources.files("connectors") / "data" / "province_population_2009.json"
    assert rebuilt == data.read_text(encoding="utf-8")


def test_names_match_without_type_accents_or_case() -> None:
    provinces = {"06": "Tỉnh Bắc Kạn", "46": "Thành phố Huế", "77": "Tỉnh Bà Rịa - Vũng Tàu"}
    assert match(["BAC KAN", "Thừa Thiên Huế", "Ba Ria Vung Tau"], provinces) == {
        "BAC KAN": "06",
        "Thừa Thiên Huế": "46",
        "Ba Ria Vung Tau": "77",
    }


@pytest.mark.parametrize(
    "names",
    [
        ["Bắc Kạn", "Huế", "Hà Tây"],  # a name that matches no province
        ["Bắc Kạn"],  # a province no name matches
        ["Bắc Kạn", "Bac Kan", "Huế"],  # a province two names match
    ],
)
def test_the_build_stops_unless_names_and_codes_match_one_to_one(names: list[str]) -> None:
    provinces = {"06": "Tỉnh Bắc Kạn", "46": "Thành phố Huế"}
    with pytest.raises(MatchError):
        match(names, provinces)


def test_a_name_matching_two_provinces_stops_the_build() -> None:
    with pytest.raises(MatchError, match="matches 2"):
        match(["Bắc Kạn"], {"06": "Tỉnh Bắc Kạn", "60": "Thành phố Bắc Kạn"})
