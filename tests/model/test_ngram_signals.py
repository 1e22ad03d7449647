"""The char n-gram signal reader: features, logits, its file, and a model that reads its signals with it."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from tonewatch.labels import AGENT_SIGNALS, CUSTOMER_SIGNALS, SIGNALS
from tonewatch.model.classifier import Classifier
from tonewatch.model.ngram_signals import (
    NGRAM_FILE,
    READER_NAME,
    NgramSignalReader,
    NgramSpec,
    char_ngrams,
    document_frequency_idf,
    hashed_counts,
    tfidf_row,
)
from tonewatch.model.types import ModelConfig, ModelDirectoryError, TurnInput, read_model_config

SMALL = NgramSpec(min_n=1, max_n=3, buckets=2**8)


def test_ngrams_are_taken_per_word_with_space_padding():
    assert char_ngrams("Ab", NgramSpec(1, 2, 16)) == [" ", "a", "b", " ", " a", "ab", "b "]
    # a word shorter than n gives itself (padded) once, and longer n are not tried
    assert char_ngrams("x", NgramSpec(3, 5, 16)) == [" x "]
    assert char_ngrams("  ", NgramSpec(1, 2, 16)) == []
    # a Chinese clause has no spaces: it is one word
    assert char_ngrams("投诉", NgramSpec(2, 2, 16)) == [" 投", "投诉", "诉 "]


def test_ngrams_follow_the_models_normalisation():
    # Latin look-alike letters in a Cyrillic word are read as Cyrillic under "lookalikes"
    mixed = "дoлбoёб"  # two Latin o's
    assert char_ngrams(mixed, SMALL, "lookalikes") == char_ngrams("долбоёб", SMALL, "lookalikes")
    assert char_ngrams(mixed, SMALL, "none") != char_ngrams("долбоёб", SMALL, "none")


def test_hashing_is_crc32_modulo_the_buckets():
    buckets, counts = hashed_counts("aa", NgramSpec(1, 1, 2**8))
    expected = sorted({zlib.crc32(b" ") & 255, zlib.crc32(b"a") & 255})
    assert buckets.tolist() == expected
    assert dict(zip(buckets.tolist(), counts.tolist(), strict=True))[zlib.crc32(b"a") & 255] == 2.0


def test_tfidf_rows_are_unit_norm_and_idf_is_smoothed():
    idf = document_frequency_idf([np.array([0, 1]), np.array([1])], 4)
    assert idf[1] == pytest.approx(np.log(3 / 3) + 1) and idf[3] == pytest.approx(np.log(3 / 1) + 1)
    row = tfidf_row(np.array([0, 3]), np.array([1.0, np.e]), idf)
    assert np.linalg.norm(row) == pytest.approx(1.0)
    assert row[1] / row[0] == pytest.approx(2 * idf[3] / idf[0])  # (1 + ln e) = 2
    assert tfidf_row(np.array([], dtype=int), np.array([]), idf).size == 0


def random_reader(spec: NgramSpec = SMALL, normalize: str = "none", seed: int = 0) -> NgramSignalReader:
    rng = np.random.default_rng(seed)
    return NgramSignalReader(
        rng.normal(size=(spec.buckets, len(SIGNALS))).astype(np.float16).astype(np.float32),
        rng.normal(size=len(SIGNALS)),
        rng.uniform(1, 3, size=spec.buckets).astype(np.float32),
        spec,
        normalize,
    )


def test_logits_are_the_linear_model_over_the_features():
    reader = random_reader()
    text = "позовите руководителя, пожалуйста"
    buckets, counts = hashed_counts(text, reader.spec)
    expected = tfidf_row(buckets, counts, reader.idf) @ reader.weight[buckets] + reader.bias
    logits = reader.logits([text, ""])
    np.testing.assert_allclose(logits[0], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits[1], reader.bias, rtol=1e-6)  # no n-gram: the bias alone
    assert logits.dtype == np.float32 and logits.shape == (2, len(SIGNALS))


def test_the_reader_file_round_trips(tmp_path):
    reader = random_reader(normalize="lookalikes")
    reader.save(tmp_path)
    loaded = NgramSignalReader.load(tmp_path)
    assert loaded.spec == reader.spec and loaded.normalize == "lookalikes"
    texts = ["我要投诉你们", "Если вы продолжите, я завершу звонок"]
    np.testing.assert_allclose(loaded.logits(texts), reader.logits(texts), rtol=1e-5, atol=1e-4)


def test_a_missing_or_misshapen_reader_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=NGRAM_FILE):
        NgramSignalReader.load(tmp_path)
    with pytest.raises(ValueError, match="shapes disagree"):
        NgramSignalReader(np.zeros((4, 6)), np.zeros(6), np.zeros(8), NgramSpec(1, 2, 4), "none")
    with pytest.raises(ValueError, match="power of two"):
        NgramSpec(buckets=1000)


@pytest.fixture(scope="module")
def ngram_model_dir(tiny_model_dir, tmp_path_factory):
    """The tiny model (no signal head) with a random n-gram reader for every signal."""
    import shutil

    directory = tmp_path_factory.mktemp("tiny-ngram-model")
    for path in tiny_model_dir.iterdir():
        shutil.copyfile(path, directory / path.name)
    config = read_model_config(tiny_model_dir)
    config.signals, config.signal_reader = SIGNALS, READER_NAME
    (directory / "config.json").write_text(json.dumps(config.to_json(), indent=2) + "\n")
    random_reader(seed=3).save(directory)
    return directory


def test_a_reader_model_has_no_signal_head_and_says_so_in_its_config(ngram_model_dir, tiny_model_dir):
    data = json.loads((ngram_model_dir / "config.json").read_text())
    assert data["signal_reader"] == READER_NAME and data["signals"] == list(SIGNALS)
    config = ModelConfig.from_json(data)
    assert config.head_signals == () and config.signals == SIGNALS
    assert "signal_reader" not in json.loads((tiny_model_dir / "config.json").read_text())
    classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    assert classifier.network.signal_head is None
    with pytest.raises(ModelDirectoryError, match="unknown signal reader"):
        ModelConfig.from_json({**data, "signal_reader": "regex"})


def test_a_reader_model_gives_the_readers_calibrated_signals(ngram_model_dir, tiny_model_dir):
    classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    plain = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    items = [TurnInput("я буду жаловаться", (("agent", "извините"),), "ru"), TurnInput("请问", (), "zh")]
    predictions = classifier.classify(items)
    reader = NgramSignalReader.load(ngram_model_dir)
    expected = 1 / (1 + np.exp(-reader.logits([item.text for item in items])))
    for row, prediction in enumerate(predictions):
        assert set(prediction.signals) == set(CUSTOMER_SIGNALS)
        for name in CUSTOMER_SIGNALS:
            assert prediction.signals[name] == pytest.approx(expected[row, SIGNALS.index(name)], abs=1e-5)
    # emotion and escalation are the network's, as without the reader
    for ours, theirs in zip(predictions, plain.classify(items), strict=True):
        assert ours.scores == pytest.approx(theirs.scores) and ours.escalate_score == pytest.approx(
            theirs.escalate_score
        )
    (agent,) = classifier.agent_signals(["如果您继续辱骂，我将不得不结束通话"])
    assert set(agent) == set(AGENT_SIGNALS)
    column = SIGNALS.index("abuse_warning")
    probability = 1 / (1 + np.exp(-reader.logits(["如果您继续辱骂，我将不得不结束通话"])[0, column]))
    assert agent["abuse_warning"] == pytest.approx(probability, abs=1e-5)


def test_a_reader_model_exports_to_onnx_with_the_same_signals(ngram_model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    from tonewatch.model.export import OnnxRecipe, export_onnx

    torch_classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    items = [TurnInput("позовите старшего", (), "ru"), TurnInput("我要投诉", (), "zh")]
    onnx_dir = export_onnx(
        torch_classifier, cache_dir=tmp_path, recipe=OnnxRecipe.named("fp32"), calibration_turns=items
    )
    onnx_classifier = Classifier.from_pretrained(ngram_model_dir, backend="onnx", cache_dir=tmp_path, recipe="fp32")
    assert onnx_dir.is_dir()
    for ours, theirs in zip(onnx_classifier.classify(items), torch_classifier.classify(items), strict=True):
        assert ours.signals == pytest.approx(theirs.signals, abs=1e-6)
        assert ours.escalate_score == pytest.approx(theirs.escalate_score, abs=1e-4)


def test_a_reader_model_needs_its_directory_or_its_reader(ngram_model_dir):
    classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    with pytest.raises(ModelDirectoryError, match="model directory or its reader"):
        Classifier(classifier.backend, classifier.tokenizer, classifier.config)
    wrong = NgramSignalReader(np.zeros((4, 2)), np.zeros(2), np.ones(4), NgramSpec(1, 1, 4), "none")
    with pytest.raises(ModelDirectoryError, match="2 signals"):
        Classifier(classifier.backend, classifier.tokenizer, classifier.config, signal_reader=wrong)


def test_agent_turns_of_a_reader_model_need_no_encoder_pass(ngram_model_dir):
    classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    calls = []
    backend = classifier.backend
    classifier.backend = lambda *arrays, **options: calls.append(len(arrays[0])) or backend(*arrays, **options)
    (signals,) = classifier.agent_signals(["Соединяю вас с руководителем"])
    assert set(signals) == set(AGENT_SIGNALS) and calls == []
    classifier.classify(["позовите старшего"])
    assert calls == [1]


def test_the_reader_reads_a_long_turn_whole_while_the_network_reads_it_in_windows(ngram_model_dir):
    classifier = Classifier.from_pretrained(ngram_model_dir, backend="torch")
    reader = NgramSignalReader.load(ngram_model_dir)
    long_turn = TurnInput(" ".join(["спасибо"] * 12 + ["позовите", "руководителя"]), (), "ru")
    (prediction,) = classifier.classify([long_turn])
    assert prediction.windows == classifier.window_count(long_turn) > 1
    expected = 1 / (1 + np.exp(-reader.logits([long_turn.text])[0]))
    for name in CUSTOMER_SIGNALS:
        assert prediction.signals[name] == pytest.approx(expected[SIGNALS.index(name)], abs=1e-5)
