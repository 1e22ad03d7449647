from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tonewatch.model.inputs import InputLimits, encode_turn


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    return AutoTokenizer.from_pretrained(str(tiny_base_dir))


def test_turn_without_context_is_one_segment(tokenizer):
    encoded = encode_turn(tokenizer, "abc", (), InputLimits(32, 16, 3))
    assert encoded.input_ids[0] == tokenizer.bos_token_id and encoded.input_ids[-1] == tokenizer.eos_token_id
    assert set(encoded.token_type_ids) == {0}
    assert len(encoded.input_ids) == len(encoded.token_type_ids)


def test_context_follows_the_turn_with_type_1_and_oldest_turns_go_first(tokenizer):
    context = [("agent", "aaaa aaaa aaaa"), ("customer", "bbbb"), ("agent", "cccc")]
    limits = InputLimits(max_length=40, max_turn_tokens=8, max_context_turns=3)
    encoded = encode_turn(tokenizer, "xyz", context, limits)
    first_context = encoded.token_type_ids.index(1)
    assert encoded.token_type_ids[:first_context] == [0] * first_context
    assert encoded.input_ids[-1] == tokenizer.eos_token_id and len(encoded.input_ids) <= 40
    tight = encode_turn(tokenizer, "xyz", context, InputLimits(max_length=24, max_turn_tokens=8, max_context_turns=3))
    assert len(tight.input_ids) == 24
    decoded_tight = tokenizer.decode(tight.input_ids[tight.token_type_ids.index(1) :])
    assert "cccc" in decoded_tight.replace(" ", "") and "aaaa" not in decoded_tight.replace(" ", "")


def test_turn_is_cut_to_max_turn_tokens_and_context_turns_are_limited(tokenizer):
    long_turn = "abcdefghij" * 5
    encoded = encode_turn(tokenizer, long_turn, [("agent", "hello")], InputLimits(64, 10, 1))
    assert encoded.token_type_ids.count(0) == 12  # <s> + 10 + </s>
    none = encode_turn(tokenizer, "abc", [("agent", "hello")], InputLimits(64, 10, 0))
    assert 1 not in none.token_type_ids


def test_bad_limits_and_speakers_are_rejected(tokenizer):
    with pytest.raises(ValueError):
        InputLimits(max_length=10, max_turn_tokens=10)
    with pytest.raises(ValueError, match="unknown speaker"):
        encode_turn(tokenizer, "abc", [("bot", "hi")], InputLimits(32, 8, 2))
