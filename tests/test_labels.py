from __future__ import annotations

import pytest

from tonewatch.labels import EMOTION_LABELS, LANGUAGE_SCRIPTS, LANGUAGES, detect_lang, most_severe, severity


def test_the_labels_of_the_guide_are_ordered_by_severity():
    assert EMOTION_LABELS == ("calm", "frustrated", "angry", "abusive")
    assert severity("calm") < severity("frustrated") < severity("angry") < severity("abusive")


def test_most_severe_picks_the_worst_label():
    assert most_severe(["calm", "abusive", "frustrated"]) == "abusive"
    assert most_severe(("frustrated", "calm")) == "frustrated"
    with pytest.raises(ValueError):
        most_severe([])
    with pytest.raises(ValueError, match="unknown emotion"):
        severity("furious")


def test_the_language_of_a_text_is_read_from_its_script():
    assert set(LANGUAGE_SCRIPTS) == set(LANGUAGES)
    assert detect_lang("如果今天不给我退款，我就去消协投诉") == "zh"
    assert detect_lang("我們的網路又斷了") == "zh"  # Traditional characters are Han too
    assert detect_lang("Верните деньги, иначе пойду в суд") == "ru"
    assert detect_lang("мой iPhone 15 опять не работает") == "ru"  # Latin and digits do not count
    assert detect_lang("OK!!! 123 😡") is None
    assert detect_lang("") is None and detect_lang() is None
    assert detect_lang("你好", "да") is None  # as many of each: no guess
    # Several texts are read together (a turn and its context): the script with the most characters wins.
    assert detect_lang("OK", "您好，请问有什么可以帮您？") == "zh"
    assert detect_lang("Жду ответа 你好") == "ru"
