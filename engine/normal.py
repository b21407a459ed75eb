"""The normal form values are compared in, so that equal values never make a conflict.

Only comparison uses it: a stored value keeps what was recorded. Text is compared as

1. Unicode NFC;
2. look-alike letters folded: ``Ð`` (U+00D0, eth) and ``Ɖ`` (U+0189, African D) to ``Đ``
   (U+0110), ``ð`` (U+00F0) to ``đ`` (U+0111);
3. every run of whitespace (Unicode's, no-break space included) one space, none at the ends;
4. Vietnamese tone marks placed by one rule, so that ``Hoà``/``Hòa``, ``Thuý``/``Thúy`` and
   ``khoẻ``/``khỏe`` compare equal. In a syllable (a word of Latin letters, ``đ`` and
   Vietnamese marks, carrying one tone mark on a vowel) the tone goes, after ``qu`` and
   ``gi`` are counted as consonants: on the vowel with a circumflex, breve or horn (the last
   one: ``ươ`` takes it on ``ơ``); else, before a final consonant, on the last vowel
   (``Hoàng``, ``Quỳnh``); else on the middle of three vowels (``hoài``, ``khuỷu``) or the
   first of two (``hòa``, ``thúy``, ``khỏe``, ``mái``), the placement of the official unit
   names (``Hòa Bình``, ``Thanh Hóa``). Any other word is left as it is.

Case is kept: ``NGUYỄN`` and ``Nguyễn`` differ. Place values are equal when they derive to the
same current unit (``engine.places.comparison_key``); other values when their normal forms are
equal. Normal forms are cached: the merge compares the same few values again and again.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from engine.events import Value
from engine.places import PLACE_FIELDS, comparison_key

_LOOK_ALIKES = str.maketrans({"\u00d0": "\u0110", "\u0189": "\u0110", "\u00f0": "\u0111"})
_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")  # grave, acute, tilde, hook, dot below
_MODIFIERS = frozenset("\u0302\u0306\u031b")  # circumflex, breve, horn: part of the letter
_VOWELS = frozenset("aeiouyAEIOUY")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZđĐ")
# A word in NFD: letters with their combining marks (U+0300-U+036F).
_WORD = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f])+")


@lru_cache(maxsize=131_072)
def normal_text(text: str) -> str:
    """``text`` in the comparison normal form (see the module)."""
    text = " ".join(unicodedata.normalize("NFC", text).translate(_LOOK_ALIKES).split())
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFD", text)
    return unicodedata.normalize("NFC", _WORD.sub(_place_tone, decomposed))


def equivalent(field: str, a: Value, b: Value) -> bool:
    """Whether ``a`` and ``b``, values of ``field``, are the same value once normalised."""
    if a == b:
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    if field in PLACE_FIELDS:
        return _place_key(a) == _place_key(b)
    return normal_text(a) == normal_text(b)


@lru_cache(maxsize=65_536)
def _place_key(value: str) -> tuple[str | None, ...]:
    kind, *parts = comparison_key(value)
    return (kind, *(normal_text(p) if kind == "text" and p is not None else p for p in parts))


def _place_tone(found: re.Match[str]) -> str:
    """One NFD word with its tone mark on the vowel the rule gives, or as it was."""
    word = found.group()
    letters: list[list[str]] = []  # each letter with its marks
    tones: list[str] = []
    for char in word:
        if char in _LETTERS:
            letters.append([char])
        elif char in _MODIFIERS and letters:
            letters[-1].append(char)
        elif char in _TONES and letters and letters[-1][0] in _VOWELS:
            tones.append(char)
        else:
            return word  # not a Vietnamese syllable: a mark elsewhere, another letter
    if len(tones) != 1:
        return word
    vowel = _tone_position([letter[0] for letter in letters], letters)
    if vowel is None:
        return word
    letters[vowel].append(tones[0])
    return unicodedata.normalize("NFD", "".join("".join(letter) for letter in letters))


def _tone_position(bases: list[str], letters: list[list[str]]) -> int | None:
    """The index of the letter that takes the tone in one syllable, None if it is none."""
    vowels = [i for i, base in enumerate(bases) if base in _VOWELS]
    if not vowels or vowels[-1] + 1 - vowels[0] != len(vowels):
        return None  # no vowel, or two vowel groups: not one syllable
    start, end = vowels[0], vowels[-1] + 1
    if start == 1 and end - start > 1 and (bases[0] + bases[1]).lower() in {"qu", "gi"}:
        start += 1  # the u of qu and the i of gi belong to the consonant
    marked = [i for i in range(start, end) if len(letters[i]) > 1]
    if marked:
        return marked[-1]
    if end < len(bases):
        return end - 1
    offset = _OPEN_SYLLABLE.get(end - start)  # none for four vowels or more
    return None if offset is None else start + offset


_OPEN_SYLLABLE = {1: 0, 2: 0, 3: 1}  # vowels -> which takes the tone, when nothing follows
