"""The reconcile merge join: every difference found, in PIN order, with flat memory."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.reconcile import MISSING, Mismatch, Row, compare

FIELDS = ["full_name", "sex"]


def test_differences_missing_people_and_agreement() -> None:
    civil: list[Row] = [
        ("001", {"full_name": "An", "sex": "male"}),
        ("002", {"full_name": "Bình", "sex": None}),
    ]
    population: list[Row] = [
        ("002", {"full_name": "Binh", "sex": None}),
        ("003", {"full_name": "Chi", "sex": "female"}),
    ]
    assert list(compare(civil, population, FIELDS)) == [
        Mismatch("001", MISSING, "present", None),
        Mismatch("002", "full_name", "Bình", "Binh"),
        Mismatch("003", MISSING, None, "present"),
    ]


def test_the_sides_are_read_lazily() -> None:
    def endless(prefix: str):  # type: ignore[no-untyped-def]
        n = 0
        while True:
            yield f"{n:012d}", {"full_name": prefix, "sex": "male"}
            n += 1

    first = next(compare(endless("A"), endless("B"), FIELDS))
    assert first == Mismatch("000000000000", "full_name", "A", "B")


people = st.dictionaries(
    st.from_regex(r"[0-9]{3}", fullmatch=True),
    st.fixed_dictionaries(
        {
            "full_name": st.sampled_from(["An", "Ân", None]),
            "sex": st.sampled_from(["male", "female"]),
        }
    ),
    max_size=30,
)


@given(people, people)
def test_the_join_finds_exactly_what_a_dictionary_comparison_finds(
    civil: dict[str, dict[str, str | None]], population: dict[str, dict[str, str | None]]
) -> None:
    found = list(compare(sorted(civil.items()), sorted(population.items()), FIELDS))
    expected = []
    for pin in sorted(civil.keys() | population.keys()):
        if pin not in population:
            expected.append(Mismatch(pin, MISSING, "present", None))
        elif pin not in civil:
            expected.append(Mismatch(pin, MISSING, None, "present"))
        else:
            expected += [
                Mismatch(pin, f, civil[pin][f], population[pin][f])
                for f in FIELDS
                if civil[pin][f] != population[pin][f]
            ]
    assert found == expected


def test_values_equal_in_the_normal_form_are_no_mismatch() -> None:
    place = '{"code": "%s", "code_list": "%s", "current": {"ward_code": "00004"}, "text": "x"}'
    civil: list[Row] = [
        ("001", {"full_name": "Lê Thị Thuý Hoà", "sex": "female",
                 "permanent_residence": place % ("00001", "pre-2025")}),
        ("002", {"full_name": "Ðặng  Văn An", "sex": "male", "permanent_residence": None}),
        ("003", {"full_name": "Lê Thị Hoa", "sex": "female", "birth_date": "1985"}),
    ]  # fmt: skip
    population: list[Row] = [
        ("001", {"full_name": "Lê Thị Thúy Hòa", "sex": "female",
                 "permanent_residence": place % ("00004", "2025")}),
        ("002", {"full_name": "Đặng Văn An", "sex": "male", "permanent_residence": None}),
        ("003", {"full_name": "Lê Thị Hoa", "sex": "female", "birth_date": "1985-03-12"}),
    ]  # fmt: skip
    fields = ["full_name", "sex", "permanent_residence", "birth_date"]
    assert list(compare(civil, population, fields)) == [
        # the merger makes both hold the more precise date: a difference until then
        Mismatch("003", "birth_date", "1985", "1985-03-12"),
    ]
