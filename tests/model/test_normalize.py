import pytest
from transformers import AutoTokenizer

from tonewatch.model.inputs import InputLimits, encode_turn
from tonewatch.model.normalize import normalize_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Вы идиoт?", "Вы идиот?"),
        ("ну ты и cyка", "ну ты и сука"),
        ("пpидyрoки", "придуроки"),
        ("Продавец ваш — yблyдoк", "Продавец ваш — ублудок"),
        ("ду\u200bрак", "дурак"),
        ("д0лб0ёб", "долбоёб"),
    ],
)
def test_lookalikes_are_undone_inside_cyrillic_words(text, expected):
    assert normalize_text(text, "lookalikes") == expected


@pytest.mark.parametrize(
    "text",
    [
        "ok, спасибо",
        "iPhone 15 не включается",
        "tvar ty lzhivaya",  # transliteration is a word of its own, learnt from examples
        "заказ 5шт и 300р",
        "你们这样和抢劫有什么区别？",
        "Q3 отчёт",
    ],
)
def test_words_in_one_script_and_numbers_are_left_alone(text):
    assert normalize_text(text, "lookalikes") == text


def test_none_changes_nothing_and_unknown_modes_are_refused():
    assert normalize_text("идиoт\u200b", "none") == "идиoт\u200b"
    with pytest.raises(ValueError, match="unknown text normalisation"):
        normalize_text("x", "nfkc")
    with pytest.raises(ValueError, match="unknown text normalisation"):
        InputLimits(normalize="nfkc")


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    return AutoTokenizer.from_pretrained(str(tiny_base_dir))


def test_the_encoder_input_reads_turn_and_context_normalised(tokenizer):
    limits = InputLimits(64, 32, 2, normalize="lookalikes")
    disguised = encode_turn(tokenizer, "ты идиoт", [("agent", "cyка")], limits)
    plain = encode_turn(tokenizer, "ты идиот", [("agent", "сука")], limits)
    assert disguised == plain
    assert encode_turn(tokenizer, "ты идиoт", limits=InputLimits(64, 32, 2)) != encode_turn(
        tokenizer, "ты идиот", limits=InputLimits(64, 32, 2)
    )
