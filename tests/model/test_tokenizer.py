"""The ONNX path's tokenizer (the ``tokenizers`` library alone) and batch tokenisation give the same model inputs as
transformers' tokenizer one text at a time, and loading an export imports neither torch nor transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tonewatch.model.inputs import InputLimits, encode_turn_windows, encode_turns_windows
from tonewatch.model.tokenizer import ExportTokenizer

TEXTS = [
    "我的网络又断了!", "找你们经理", "опять не работает, верните деньги", "ok", "", "  两个  空格 ", "<s> </s> <pad>",
    "ду\u200bрак идиoт", "a" * 300, "Это издевательство, позовите старшего! 你们的服务太差了",
]  # fmt: skip
CONTEXTS = [(), (("agent", "您好"),), (("agent", "Здравствуйте"), ("customer", "Верните деньги"), ("agent", "нет"))]


@pytest.fixture(scope="module")
def tokenizers_pair(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_model_dir)), ExportTokenizer.from_directory(tiny_model_dir)


def test_export_tokenizer_gives_transformers_ids_and_special_tokens(tokenizers_pair):
    transformers_tokenizer, export_tokenizer = tokenizers_pair
    for attribute in ("bos_token_id", "eos_token_id", "pad_token_id"):
        assert getattr(export_tokenizer, attribute) == getattr(transformers_tokenizer, attribute)
    for text in TEXTS:
        expected = transformers_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert export_tokenizer(text, add_special_tokens=False)["input_ids"] == expected
    batch = export_tokenizer(TEXTS, add_special_tokens=False)["input_ids"]
    assert batch == [transformers_tokenizer(text, add_special_tokens=False)["input_ids"] for text in TEXTS]
    assert len(batch[TEXTS.index("a" * 300)]) > 128  # no truncation, whatever the tokenizer file says


@pytest.mark.parametrize("limits", [InputLimits(48, 24, 2), InputLimits(32, 6, 4, "lookalikes"), InputLimits(16, 8, 0)])
def test_batch_encoding_is_the_one_turn_at_a_time_encoding(tokenizers_pair, limits):
    transformers_tokenizer, export_tokenizer = tokenizers_pair
    turns = [
        (text, context, speaker) for text in TEXTS if text for context in CONTEXTS for speaker in ("customer", "agent")
    ]
    expected = [encode_turn_windows(transformers_tokenizer, *turn[:2], limits, turn[2]) for turn in turns]
    assert any(len(windows) > 1 for windows in expected)  # long turns are read in windows
    assert encode_turns_windows(export_tokenizer, turns, limits) == expected
    assert encode_turns_windows(transformers_tokenizer, turns, limits) == expected
    assert encode_turns_windows(export_tokenizer, [], limits) == []


def test_batch_encoding_refuses_an_unknown_context_speaker_as_one_turn_does(tokenizers_pair):
    _, export_tokenizer = tokenizers_pair
    turn = ("hello", (("supervisor", "hi"),), "customer")
    with pytest.raises(ValueError, match="unknown speaker 'supervisor'"):
        encode_turn_windows(export_tokenizer, *turn[:2], InputLimits(48, 24, 2))
    with pytest.raises(ValueError, match="unknown speaker 'supervisor'"):
        encode_turns_windows(export_tokenizer, [turn], InputLimits(48, 24, 2))


def test_a_special_token_missing_from_the_file_is_a_model_directory_error(tiny_model_dir, tmp_path):
    from tonewatch.model.types import ModelDirectoryError

    (tmp_path / "tokenizer.json").write_bytes((tiny_model_dir / "tokenizer.json").read_bytes())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<nope>"}))
    with pytest.raises(ModelDirectoryError, match="bos token '<nope>'"):
        ExportTokenizer.from_directory(tmp_path)


def test_loading_an_export_imports_neither_torch_nor_transformers(tiny_model_dir, offline_cache):
    from tonewatch.model.classifier import Classifier

    Classifier.from_pretrained(tiny_model_dir, backend="onnx")  # builds the export into the cache (needs torch)
    script = (
        "import sys; from tonewatch.model.classifier import Classifier; from tonewatch.model.types import TurnInput\n"
        f"c = Classifier.from_pretrained({str(tiny_model_dir)!r}, backend='onnx')\n"
        "p = c.classify([TurnInput('找你们经理', (('agent', '您好'),))])\n"
        "print(type(c.tokenizer).__name__, p[0].emotion in p[0].scores, 'torch' in sys.modules, "
        "'transformers' in sys.modules)\n"
    )
    output = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout
    assert output.split() == ["ExportTokenizer", "True", "False", "False"]
