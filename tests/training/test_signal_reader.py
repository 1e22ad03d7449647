"""Fitting the char n-gram signal reader onto a trained model (``tonewatch fit-signals``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tonewatch.data.signal_labels import SIGNALS_DIR
from tonewatch.labels import CUSTOMER_SIGNALS, SIGNALS
from tonewatch.model.classifier import Classifier
from tonewatch.model.ngram_signals import NGRAM_FILE, READER_NAME, NgramSignalReader, NgramSpec
from tonewatch.model.types import TurnInput, read_model_config
from tonewatch.training.signal_reader import FIT_SUMMARY_NAME, ReaderFit, fit_signals

FIT = ReaderFit(c=4.0, spec=NgramSpec(1, 3, 2**12), seed=7, validation_fraction=0.3)


@pytest.fixture(scope="module")
def labels_dir(tmp_path_factory):
    """Every fourth annotated conversation of callcenter_train's signal overlay (both languages, every signal)."""
    directory = tmp_path_factory.mktemp("signal-labels")
    lines = (SIGNALS_DIR / "callcenter_train.jsonl").read_text(encoding="utf-8").splitlines()
    (directory / "callcenter_train.jsonl").write_text("\n".join(lines[::4]) + "\n", encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def fitted(tiny_model_dir, labels_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("fitted") / "model"
    summary = fit_signals(tiny_model_dir, output, FIT, signal_labels_dir=labels_dir)
    return output, summary


def test_the_fitted_model_reads_signals_and_keeps_the_rest(fitted, tiny_model_dir):
    output, _ = fitted
    config, source = read_model_config(output), read_model_config(tiny_model_dir)
    assert config.signals == SIGNALS and config.signal_reader == READER_NAME
    assert config.calibration.emotion_temperature == source.calibration.emotion_temperature
    assert config.calibration.escalation_thresholds == source.calibration.escalation_thresholds
    assert (output / "model.safetensors").read_bytes() == (tiny_model_dir / "model.safetensors").read_bytes()
    assert (output / NGRAM_FILE).is_file()
    items = [TurnInput("позовите руководителя немедленно", (), "ru"), TurnInput("谢谢", (), "zh")]
    ours = Classifier.from_pretrained(output, backend="torch").classify(items)
    theirs = Classifier.from_pretrained(tiny_model_dir, backend="torch").classify(items)
    for new, old in zip(ours, theirs, strict=True):
        assert new.scores == pytest.approx(old.scores) and set(new.signals) == set(CUSTOMER_SIGNALS)
    assert ours[0].signals["supervisor_request"] > ours[1].signals["supervisor_request"]


def test_the_fit_learns_the_signals_words(fitted):
    output, summary = fitted
    reader = NgramSignalReader.load(output)
    column = SIGNALS.index("supervisor_request")
    asking = reader.logits(["позовите вашего руководителя", "我要找你们领导"])[:, column]
    not_asking = reader.logits(["спасибо, всё понятно", "好的，谢谢"])[:, column]
    assert asking.min() > not_asking.max()
    figures = summary["held_out_figures"]
    assert figures["zh"]["apology_or_offer"]["f1"] > 0.7 and figures["ru"]["apology_or_offer"]["f1"] > 0.7
    recorded = json.loads((output / FIT_SUMMARY_NAME).read_text())
    assert recorded["seed"] == 7 and recorded["validation_fraction"] == 0.3
    assert recorded["signals"]["supervisor_request"]["train_positives"] > 0
    assert recorded["turns"]["train"] > recorded["turns"]["held_out"] > 0
    assert read_model_config(output).version == read_model_config(recorded["source_model"]).version  # kept


def test_the_new_model_may_get_its_own_version(tiny_model_dir, labels_dir, tmp_path):
    fit = ReaderFit(c=1.0, spec=NgramSpec(1, 2, 2**8), seed=7, validation_fraction=0.3, version="6")
    fit_signals(tiny_model_dir, tmp_path / "v6", fit, signal_labels_dir=labels_dir)
    assert read_model_config(tmp_path / "v6").version == "6"


def test_the_signal_thresholds_are_fitted_on_the_held_out_turns(fitted):
    output, summary = fitted
    calibration = read_model_config(output).calibration
    assert calibration.signal_temperature > 0
    assert set(calibration.signal_thresholds) <= set(SIGNALS)
    assert "apology_or_offer" in calibration.signal_thresholds
    for name, details in summary["signals"].items():
        if details.get("held_out_positives"):
            a, _ = details["platt"]
            assert a > 0, name


def test_the_output_must_be_a_new_directory(tiny_model_dir, labels_dir):
    with pytest.raises(ValueError, match="new directory"):
        fit_signals(tiny_model_dir, tiny_model_dir, FIT, signal_labels_dir=labels_dir)


def test_a_model_without_a_recorded_split_needs_one(tiny_model_dir, labels_dir, tmp_path):
    with pytest.raises(ValueError, match="validation_fraction"):
        fit_signals(tiny_model_dir, tmp_path / "out", ReaderFit(), signal_labels_dir=labels_dir)


def test_the_held_out_split_is_the_models_own(fitted, labels_dir):
    from tonewatch.data.signal_labels import signal_set_records
    from tonewatch.data.splits import split_by_conversation

    _, summary = fitted
    records = signal_set_records("callcenter_train", labels_dir)
    train, held_out = split_by_conversation(records, 0.3, 7)
    assert summary["turns"] == {"train": len(train), "held_out": len(held_out)}
    assert not {r.conversation_id for r in train} & {r.conversation_id for r in held_out}
    assert np.isfinite(summary["minutes"])


def test_the_evaluation_reads_a_readers_signals_as_the_classifier_does(fitted, monkeypatch):
    from tonewatch.data.records import Record, Turn
    from tonewatch.training import signals_eval

    output, _ = fitted
    classifier = Classifier.from_pretrained(output, backend="torch")
    context = (Turn("agent", "Чем могу помочь?"),)
    records = [
        Record(id="c", text="позовите руководителя", lang="ru", source="t", tier="train", context=context),
        Record(id="a", text="如果您继续辱骂，我将结束通话", lang="zh", source="t", tier="train", speaker="agent"),
    ]
    monkeypatch.setattr(classifier, "raw_logits", None)  # the encoder is not run for an n-gram reader's signals
    got = signals_eval.signal_probabilities(classifier, records, "test")
    customer = classifier.classify([TurnInput("позовите руководителя", (("agent", "Чем могу помочь?"),), "ru")])[0]
    agent = classifier.agent_signals([TurnInput("如果您继续辱骂，我将结束通话", (), "zh")])[0]
    for column, name in enumerate(classifier.signal_names):
        expected = customer.signals.get(name, agent.get(name))
        row = 0 if name in CUSTOMER_SIGNALS else 1
        assert got[row, column] == pytest.approx(expected, abs=1e-6)
