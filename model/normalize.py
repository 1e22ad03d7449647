"""Text normalisation applied before tokenising, the same in training and at inference.

``"lookalikes"`` undoes two spelling games that hide words from a tokenizer without hiding them from a
reader (docs/labels.md, "spelling games"):

- invisible characters (zero-width spaces and joiners, soft hyphens, the byte-order mark) are removed, so
  "ду\u200bрак" reads as "дурак";
- in a word that mixes Cyrillic and Latin letters, Latin letters that look like Cyrillic ones (``a c e o p x
  y`` and capitals ``A B C E H K M O P T X Y``, plus ``k m`` and ``0 3 6`` between letters) become those
  Cyrillic letters, so "идиoт" and "cyка" read as "идиот" and "сука". Words in one script are left alone:
  "ok", "iPhone" and Chinese text do not change.

Transliteration ("idi nahui") and masked letters ("х*й") are not undone here: they are words of their own
that the model learns from examples.

A model records the normalisation it was trained with in ``config.json`` (``limits.normalize``); models
without it read text unchanged.
"""

from __future__ import annotations

import re

NORMALIZATIONS = ("none", "lookalikes")

_INVISIBLE = re.compile("[\u00ad\u200b\u200c\u200d\u2060\ufeff]")
_LATIN_TO_CYRILLIC = str.maketrans(
    {
        "a": "а", "c": "с", "e": "е", "o": "о", "p": "р", "x": "х", "y": "у", "k": "к", "m": "м",
        "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р",
        "T": "Т", "X": "Х", "Y": "У", "0": "о", "3": "з", "6": "б",
    }
)  # fmt: skip
# A run of letters (and digits standing for letters) that holds at least one Cyrillic and one Latin letter.
_WORD = re.compile(r"[0-9A-Za-z\u0400-\u04ff]+")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_LATIN = re.compile(r"[A-Za-z]")
_DIGIT_IN_CYRILLIC = re.compile(r"[\u0400-\u04ff][036][\u0400-\u04ff]")


def _fix_word(match: re.Match) -> str:
    word = match.group(0)
    if not (_CYRILLIC.search(word) and (_LATIN.search(word) or _DIGIT_IN_CYRILLIC.search(word))):
        return word
    core = word.strip("0123456789")  # digits at the edges are numbers ("5шт"), not letters
    start = word.find(core) if core else 0
    return word[:start] + core.translate(_LATIN_TO_CYRILLIC) + word[start + len(core) :]


def normalize_text(text: str, mode: str = "none") -> str:
    """``text`` as the model reads it under normalisation ``mode`` (one of :data:`NORMALIZATIONS`)."""
    if mode == "none":
        return text
    if mode != "lookalikes":
        raise ValueError(f"unknown text normalisation {mode!r}; expected one of {NORMALIZATIONS}")
    return _WORD.sub(_fix_word, _INVISIBLE.sub("", text))
