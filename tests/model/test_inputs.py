from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from tonewatch.model.inputs import (
    SPEAKER_PREFIX,
    InputLimits,
    count_windows,
    encode_turn,
    encode_turn_windows,
    turn_token_windows,
)


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


def test_token_windows_cover_the_turn_with_half_a_window_of_overlap():
    ids = list(range(100, 123))  # 23 tokens, windows of 10: starts 0, 5, 10, and 13 (the last ends at the end)
    windows = turn_token_windows(ids, 10)
    assert windows == [ids[0:10], ids[5:15], ids[10:20], ids[13:23]]
    assert turn_token_windows(ids[:10], 10) == [ids[:10]]  # within the budget: the turn itself
    # A speaker prefix (here 2 tokens) begins every window; the rest is windowed in the room left.
    with_prefix = turn_token_windows([1, 2, *ids], 10, head=2)
    assert all(window[:2] == [1, 2] and len(window) == 10 for window in with_prefix)
    assert with_prefix[0] == [1, 2, *ids[:8]] and with_prefix[-1] == [1, 2, *ids[-8:]]
    assert {token for window in with_prefix for token in window[2:]} == set(ids)


def test_a_long_turn_is_read_in_windows_each_with_the_context(tokenizer):
    limits = InputLimits(max_length=32, max_turn_tokens=10, max_context_turns=2)
    context = [("agent", "hello"), ("customer", "bbbb")]
    long_turn = " ".join(f"w{number}" for number in range(30))
    windows = encode_turn_windows(tokenizer, long_turn, context, limits)
    assert len(windows) == count_windows(tokenizer, long_turn, limits) > 2
    assert windows[0] == encode_turn(tokenizer, long_turn, context, limits)  # the first window is the old cut
    context_parts = set()
    for window in windows:
        assert window.token_type_ids.count(0) == 12  # <s> + 10 + </s>
        assert len(window.input_ids) <= 32
        context_parts.add(tuple(window.input_ids[window.token_type_ids.index(1) :]))
    assert len(context_parts) == 1  # every window carries the same context
    # Together the windows read every token of the turn.
    read = {token for window in windows for token in window.input_ids[1:11]}
    assert set(tokenizer(long_turn, add_special_tokens=False)["input_ids"]) <= read


def test_a_short_turn_is_one_window_and_an_agent_turn_keeps_its_prefix_in_each(tokenizer):
    limits = InputLimits(max_length=32, max_turn_tokens=10, max_context_turns=2)
    assert encode_turn_windows(tokenizer, "abc", [("agent", "hi")], limits) == [
        encode_turn(tokenizer, "abc", [("agent", "hi")], limits)
    ]
    prefix = tokenizer(SPEAKER_PREFIX["agent"], add_special_tokens=False)["input_ids"]
    windows = encode_turn_windows(tokenizer, " ".join(f"w{n}" for n in range(30)), (), limits, speaker="agent")
    assert len(windows) > 1
    assert all(window.input_ids[1 : 1 + len(prefix)] == prefix for window in windows)
