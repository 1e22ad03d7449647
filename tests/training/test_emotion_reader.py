"""The emotion n-gram expert beside the network (``tonewatch fit-emotion``)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tonewatch.labels import EMOTION_LABELS, LABEL2ID
from tonewatch.model.classifier import Classifier
from tonewatch.model.ngram_signals import EMOTION_NGRAM_FILE, READER_NAME, NgramSignalReader, NgramSpec
from tonewatch.model.types import ModelConfig, TurnInput, read_model_config
from tonewatch.training.emotion_reader import (
    FIT_SUMMARY_NAME,
    EmotionReaderFit,
    fit_emotion_reader,
    fit_linear_expert,
)

FIT = EmotionReaderFit(c=4.0, spec=NgramSpec(1, 3, 2**12))
ITEMS = [
    TurnInput("ты идиот", (("agent", "Здравствуйте"),), "ru"),
    TurnInput("谢谢，没问题了", (), "zh"),
    TurnInput("опять не работает, сколько можно", (), "ru"),
]


@pytest.fixture(scope="module")
def source_model(tiny_model_dir, tiny_base_dir, make_tiny_config, tmp_path_factory):
    """The tiny random model with the recipe it would have been trained by (callcenter_train only, in the repo)."""
    directory = tmp_path_factory.mktemp("with-recipe") / "model"
    shutil.copytree(tiny_model_dir, directory)
    make_tiny_config(tiny_base_dir, directory).save(directory / "training_config.json")
    return directory


@pytest.fixture(scope="module")
def fitted(source_model, tmp_path_factory):
    output = tmp_path_factory.mktemp("fitted") / "model"
    return output, fit_emotion_reader(source_model, output, FIT)


def test_the_expert_learns_words_of_each_label():
    texts = ["спасибо всё хорошо", "谢谢你", "опять не работает", "又坏了烦死了"]
    texts += ["вы обманщики", "你们骗子", "ты идиот", "傻逼"]
    labels = [LABEL2ID[label] for label in ("calm", "calm", "frustrated", "frustrated", "angry", "angry")]
    labels += [LABEL2ID["abusive"]] * 2
    reader = fit_linear_expert(texts * 5, labels * 5, FIT, "none")
    assert reader.num_signals == len(EMOTION_LABELS)
    predicted = reader.logits(["ты идиот", "спасибо"]).argmax(axis=1)
    assert [EMOTION_LABELS[i] for i in predicted] == ["abusive", "calm"]


def test_a_label_without_examples_is_refused():
    with pytest.raises(ValueError, match="no training record of emotion"):
        fit_linear_expert(["a", "b"], [0, 1], FIT, "none")


def test_the_fitted_model_adds_the_expert_to_the_network(fitted, source_model):
    output, summary = fitted
    config, source = read_model_config(output), read_model_config(source_model)
    assert config.emotion_reader == READER_NAME
    assert config.emotion_reader_weight == pytest.approx(source.calibration.emotion_temperature, abs=1e-4)
    assert (output / "model.safetensors").read_bytes() == (source_model / "model.safetensors").read_bytes()
    assert config.calibration.escalation_thresholds == source.calibration.escalation_thresholds
    assert (output / EMOTION_NGRAM_FILE).is_file() and not (output / "report.json").exists()
    ours = Classifier.from_pretrained(output, backend="torch")
    theirs = Classifier.from_pretrained(source_model, backend="torch")
    # one window each (the tiny tokenizer splits Cyrillic finely): a longer turn's riskiest window may differ
    items = [TurnInput("идиот", (), "ru"), TurnInput("谢谢", (), "zh"), TurnInput("опять", (), "ru")]
    assert all(ours.window_count(item) == 1 for item in items)
    combined, escalation = (tensor.numpy() for tensor in ours.raw_logits(items))
    alone, escalation_alone = (tensor.numpy() for tensor in theirs.raw_logits(items))
    expert = NgramSignalReader.load(output, EMOTION_NGRAM_FILE).logits([item.text for item in items])
    np.testing.assert_allclose(combined, alone + config.emotion_reader_weight * expert, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(escalation, escalation_alone)  # escalation does not read the expert
    recorded = json.loads((output / FIT_SUMMARY_NAME).read_text())
    assert recorded["train_records"] > recorded["calibration_records"] > 0
    assert set(recorded["calibration_set_macro_f1"]) == {"network", "network_and_ngrams"}
    assert summary["weight"] == config.emotion_reader_weight


def test_the_onnx_path_adds_the_same_expert(fitted, tmp_path):
    output, _ = fitted
    torch_path = Classifier.from_pretrained(output, backend="torch")
    onnx_path = Classifier.from_pretrained(output, backend="onnx", cache_dir=tmp_path, recipe="fp32")
    for ours, theirs in zip(onnx_path.classify(ITEMS), torch_path.classify(ITEMS), strict=True):
        assert ours.emotion == theirs.emotion
        assert ours.scores == pytest.approx(theirs.scores, abs=1e-3)


def test_a_model_without_the_expert_keeps_its_config_json(source_model):
    data = json.loads((source_model / "config.json").read_text())
    assert "emotion_reader" not in data and "emotion_reader_weight" not in data
    assert ModelConfig.from_json(data).emotion_reader == "none"


def test_an_unknown_emotion_reader_is_refused(source_model):
    data = json.loads((source_model / "config.json").read_text())
    with pytest.raises(Exception, match="unknown emotion reader"):
        ModelConfig.from_json({**data, "emotion_reader": "magic"})


def test_the_output_must_be_a_new_directory(source_model):
    with pytest.raises(ValueError, match="new directory"):
        fit_emotion_reader(source_model, source_model, FIT)


def test_refitting_the_signal_reader_keeps_the_expert(fitted, tmp_path):
    from tonewatch.training.signal_reader import ReaderFit, fit_signals

    output, _ = fitted
    refitted = tmp_path / "refitted"
    fit_signals(output, refitted, ReaderFit(c=1.0, spec=NgramSpec(1, 2, 2**8), seed=7, validation_fraction=0.3))
    assert read_model_config(refitted).emotion_reader == READER_NAME
    assert (refitted / EMOTION_NGRAM_FILE).read_bytes() == (output / EMOTION_NGRAM_FILE).read_bytes()
    ours = Classifier.from_pretrained(refitted, backend="torch").classify(ITEMS)
    theirs = Classifier.from_pretrained(output, backend="torch").classify(ITEMS)
    for new, old in zip(ours, theirs, strict=True):
        assert new.scores == pytest.approx(old.scores)
