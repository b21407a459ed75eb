"""The comparison normal form: NFC, look-alike letters, whitespace, tone-mark placement; and
equivalence of values, places by the current unit they derive to."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from civsync.generator import place_value
from connectors.place_data import place_map
from engine.normal import equivalent, normal_text
from engine.places import CodeList, Place

TONES = "\u0300\u0301\u0303\u0309\u0323"  # grave, acute, tilde, hook above, dot below


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Hoà", "Hòa"),
        ("Thuý", "Thúy"),
        ("khoẻ", "khỏe"),
        ("HOÀ", "HÒA"),
        ("Nguyễn Thị Thuý Hoà", "Nguyễn Thị Thúy Hòa"),
        ("Ðặng Văn Ðức", "Đặng Văn Đức"),  # U+00D0 eth for U+0110
        ("ðức", "đức"),
        ("Nguyễn  Văn\u00a0An ", "Nguyễn Văn An"),  # a double and a no-break space
        ("\tLê Thị\nHoa", "Lê Thị Hoa"),
        ("Nguyễn", unicodedata.normalize("NFD", "Nguyễn")),
        ("Hòang", "Hoàng"),  # the tone keyed on the wrong vowel
        ("Qùynh", "Quỳnh"),  # qu: the u is a consonant
        ("gĩư", "giữ"),  # gi: the i is a consonant
        ("hòai", "hoài"),
        ("ngừơi", "người"),  # the mark goes on the ơ of ươ
    ],
)
def test_spellings_of_one_value_are_equal(first: str, second: str) -> None:
    assert first != second
    assert normal_text(first) == normal_text(second)
    assert equivalent("full_name", first, second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Nguyễn Văn An", "Nguyen Van An"),  # tone marks are not placement
        ("Nguyễn Văn An", "Nguyễn Văn Ân"),
        ("Hòa", "Hóa"),  # another tone
        ("Nguyễn", "NGUYỄN"),  # case is kept
        ("Đức", "Duc"),
        ("Lê Thị Hoa", "Lê Thị Hoa Anh"),
    ],
)
def test_different_values_stay_different(first: str, second: str) -> None:
    assert normal_text(first) != normal_text(second)
    assert not equivalent("full_name", first, second)


def test_the_placement_of_the_official_unit_names_is_the_normal_one() -> None:
    assert normal_text("Hoà Bình") == "Hòa Bình"
    assert normal_text("Thanh Hoá") == "Thanh Hóa"
    assert normal_text("Huỳnh Thuý Vy") == "Huỳnh Thúy Vy"


def test_words_that_are_not_vietnamese_syllables_are_left_alone() -> None:
    for word in ("Muñoz", "Peña", "Ñam", "François", "Zoë", "Ǹgô", "x\u0301"):
        assert normal_text(word) == unicodedata.normalize("NFC", word)


def test_non_strings_are_equal_only_when_equal() -> None:
    assert equivalent("sex", None, None)
    assert not equivalent("full_name", None, "")
    assert not equivalent("full_name", 1, "1")


# Vietnamese words: initial, vowels, final, a tone on any vowel (any placement).
INITIALS = ["", "b", "ch", "d", "đ", "g", "gi", "h", "kh", "l", "m", "ng", "nh", "qu", "th", "tr"]
NUCLEI = [
    "a",
    "oa",
    "oe",
    "uy",
    "ua",
    "ai",
    "au",
    "ươ",
    "uô",
    "iê",
    "oai",
    "uyê",
    "ưu",
    "ư",
    "ê",
    "ă",
    "y",
]
FINALS = ["", "", "c", "ch", "m", "n", "ng", "nh", "p", "t"]


@st.composite
def syllables(draw: st.DrawFn) -> tuple[str, str]:
    """A syllable with its tone on one vowel, and with it on another vowel."""
    initial, nucleus = draw(st.sampled_from(INITIALS)), draw(st.sampled_from(NUCLEI))
    final, tone = draw(st.sampled_from(FINALS)), draw(st.sampled_from(TONES))
    vowels = [i for i, c in enumerate(nucleus) if c in "aăâeêioôơuưy"]
    first, second = draw(st.sampled_from(vowels)), draw(st.sampled_from(vowels))
    upper = draw(st.booleans())

    def spelled(at: int) -> str:
        word = initial + nucleus[: at + 1] + tone + nucleus[at + 1 :] + final
        return unicodedata.normalize("NFC", word.upper() if upper else word)

    return spelled(first), spelled(second)


texts = st.text(st.characters(codec="utf-8"), max_size=30)
vietnamese = st.lists(syllables().map(lambda pair: pair[0]), max_size=5).map(" ".join)


@given(st.one_of(texts, vietnamese))
def test_the_normal_form_is_idempotent_and_nfc(text: str) -> None:
    normal = normal_text(text)
    assert normal_text(normal) == normal
    assert unicodedata.is_normalized("NFC", normal)
    assert normal == normal.strip()
    assert "  " not in normal


@given(st.one_of(texts, vietnamese))
def test_canonically_equivalent_and_respaced_texts_have_one_normal_form(text: str) -> None:
    normal = normal_text(text)
    assert normal_text(unicodedata.normalize("NFD", text)) == normal
    assert normal_text(f"  {text}\u00a0") == normal
    assert equivalent("full_name", text, unicodedata.normalize("NFD", text))


@given(st.lists(syllables(), min_size=1, max_size=4))
def test_tone_placement_never_matters(words: list[tuple[str, str]]) -> None:
    first = " ".join(one for one, _ in words)
    second = " ".join(other for _, other in words)
    assert normal_text(first) == normal_text(second)


def _without_tones(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if c not in TONES)


def _tones(text: str) -> list[str]:
    return sorted(c for c in unicodedata.normalize("NFD", text) if c in TONES)


@given(st.one_of(texts, vietnamese))
def test_the_normal_form_moves_tone_marks_and_changes_no_letter(text: str) -> None:
    normal = normal_text(text)
    collapsed = " ".join(unicodedata.normalize("NFC", text).split())
    folded = collapsed.translate(str.maketrans("ÐƉð", "ĐĐđ"))
    assert _without_tones(normal) == _without_tones(folded)
    assert _tones(normal) == _tones(folded)


PLACES = place_map()


def _place(code: str, code_list: CodeList) -> str:
    units = PLACES.current if code_list is CodeList.Y2025 else PLACES.pre_2025
    text = units[code].name
    return place_value(PLACES.derive(Place(text, code_list, ward_code=code)))


def test_a_ward_recorded_in_either_list_is_one_place() -> None:
    old = next(  # a ward merged into a new one under another code
        c
        for c, s in sorted(PLACES.pre_2025.items())
        if len(s.units) == 1 and s.units[0].ward_code != c
    )
    unit = PLACES.pre_2025[old].units[0]
    recorded_old, recorded_new = (
        _place(old, CodeList.PRE_2025),
        _place(unit.ward_code, CodeList.Y2025),
    )
    assert recorded_old != recorded_new
    assert equivalent("permanent_residence", recorded_old, recorded_new)
    # a 2025 code without the derived unit written down is its own current unit
    bare = json.dumps({"text": unit.name, "code": unit.ward_code, "code_list": "2025"})
    assert equivalent("permanent_residence", recorded_old, bare)


def test_the_same_code_in_the_two_lists_is_not_one_place() -> None:
    code = next(
        c
        for c in sorted(PLACES.current)
        if c in PLACES.pre_2025
        and (json.loads(_place(c, CodeList.PRE_2025))["current"] or {}).get("ward_code")
        not in (None, c)
    )
    old, new = _place(code, CodeList.PRE_2025), _place(code, CodeList.Y2025)
    assert not equivalent("hometown", old, new)


def test_places_that_derive_to_other_units_differ_and_text_is_not_compared_as_a_place() -> None:
    a, b = sorted(PLACES.current)[:2]
    assert not equivalent("current_residence", _place(a, CodeList.Y2025), _place(b, CodeList.Y2025))
    undrived = [json.dumps({"text": t}) for t in ("xã Tân  Lập", "xã Tân Lập")]
    assert equivalent("current_residence", *undrived)  # no code: the text in normal form
    recorded = [json.dumps({"text": "x", "code": "00001", "code_list": "pre-2025"}), "{}"]
    assert not equivalent("current_residence", *recorded)
