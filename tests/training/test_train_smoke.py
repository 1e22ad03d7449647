"""A few training steps of a tiny random model on the in-domain fixture data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tonewatch.configfile import ConfigError
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import Calibration
from tonewatch.training.train import (
    Batch,
    distillation_loss,
    emotion_loss,
    escalation_loss,
    sample_plan,
    train,
    training_state_dir,
)


def test_smoke_training_gives_finite_loss_and_a_loadable_directory(tiny_base_dir, tmp_path, caplog, make_tiny_config):
    tiny_train_config = make_tiny_config
    config = tiny_train_config(tiny_base_dir, tmp_path / "run", max_steps=2, model_version="3.1")
    caplog.set_level("INFO")
    summary = train(config)
    assert len(summary["losses"]) == 2 and all(math.isfinite(loss) for loss in summary["losses"])
    assert [entry["step"] for entry in summary["validation_history"]] == [2]
    assert summary["best_step"] in (2,)
    for name in ("config.json", "model.safetensors", "training_config.json", "tokenizer.json"):
        assert (tmp_path / "run" / name).exists(), name
    saved = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["base_model"] == str(tiny_base_dir)
    assert json.loads((tmp_path / "run" / "training_summary.json").read_text())["losses"] == summary["losses"]
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["architecture"] == "joint" and written["version"] == "3.1"
    # The directory loads with the calibration the run fitted on its held-out conversations (not the neutral one).
    loaded = Classifier.from_pretrained(tmp_path / "run")
    assert vars(loaded.config.calibration) == summary["calibration"] != vars(Calibration())
    assert len(loaded.classify(["你好", "привет"])) == 2
    # The training state stays out of the model directory a user ships.
    assert not {"checkpoint", "best", "cache"} & {path.name for path in (tmp_path / "run").iterdir()}
    assert training_state_dir(tmp_path / "run") == tmp_path / "run.state"
    assert (tmp_path / "run.state" / "checkpoint" / "state.json").is_file()

    # Resume: a longer run continues from the step-2 checkpoint instead of starting over.
    caplog.clear()
    longer = tiny_train_config(tiny_base_dir, tmp_path / "run", max_steps=4)
    extended = train(longer, resume=True)
    assert any("resumed from step 2" in r.getMessage() for r in caplog.records)
    assert extended["losses"][:2] == summary["losses"] and len(extended["losses"]) == 4
    state = json.loads((tmp_path / "run.state" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4


class Interrupted(Exception):
    """Stands for the process being killed right after a checkpoint."""


def test_a_resumed_run_reproduces_the_uninterrupted_run(tiny_base_dir, tmp_path, make_tiny_config, monkeypatch):
    from safetensors.torch import load_file

    import tonewatch.training.train as train_module

    settings = {"max_steps": 6, "checkpoint_every": 3, "eval_every": 2, "warmup_steps": 2, "dropout": 0.3}
    whole = train(make_tiny_config(tiny_base_dir, tmp_path / "whole", **settings))

    save_checkpoint = train_module.save_checkpoint

    def save_then_stop(directory, network, optimizer, scheduler, step, *args):
        save_checkpoint(directory, network, optimizer, scheduler, step, *args)
        if step == 3:
            raise Interrupted

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_stop)
    config = make_tiny_config(tiny_base_dir, tmp_path / "split", **settings)
    with pytest.raises(Interrupted):
        train(config)
    monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    resumed = train(make_tiny_config(tiny_base_dir, tmp_path / "split", **settings), resume=True)

    assert len(resumed["losses"]) == 6
    assert resumed["losses"] == pytest.approx(whole["losses"], abs=1e-6)
    assert resumed["losses"][3:] != resumed["losses"][:3]  # the steps after the stop did train
    assert [entry["step"] for entry in resumed["validation_history"]] == [2, 4, 6]
    for before, after in zip(whole["validation_history"], resumed["validation_history"], strict=True):
        assert after == pytest.approx(before, abs=1e-6)
    for name in ("whole.state/checkpoint/trainable.safetensors", "whole/model.safetensors"):
        expected, got = load_file(tmp_path / name), load_file(tmp_path / name.replace("whole", "split"))
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")


def test_resume_without_a_checkpoint_stops_instead_of_starting_over(tiny_base_dir, tmp_path, make_tiny_config):
    with pytest.raises(ConfigError, match=r"^nothing to resume: no checkpoint in .*run\.state.checkpoint"):
        train(make_tiny_config(tiny_base_dir, tmp_path / "run"), resume=True)
    assert not (tmp_path / "run").exists()


def test_a_missing_extra_data_file_is_refused_before_any_source_loads(
    tiny_base_dir, tmp_path, make_tiny_config, monkeypatch
):
    def no_data(config):
        raise AssertionError("the sources were loaded before extra_data was checked")

    monkeypatch.setattr("tonewatch.training.train.build_training_data", no_data)
    missing = tmp_path / "mine.csv"
    config = make_tiny_config(tiny_base_dir, tmp_path / "run", extra_data=[{"path": str(missing), "lang": "zh"}])
    with pytest.raises(ConfigError) as error:
        train(config)
    assert str(error.value) == f"extra_data[0].path: no such file: {missing}"
    assert not (tmp_path / "run").exists()


def test_existing_model_directory_is_not_overwritten(tiny_base_dir, tiny_model_dir, make_tiny_config):
    with pytest.raises(ValueError, match="already holds a model"):
        train(make_tiny_config(tiny_base_dir, tiny_model_dir))


def test_a_shallower_student_distils_from_a_teacher_directory(
    tiny_base_dir, tiny_model_dir, tmp_path, caplog, make_tiny_config
):
    config = make_tiny_config(
        tiny_base_dir, tmp_path / "student", max_steps=2, num_hidden_layers=1, teacher=str(tiny_model_dir)
    )
    caplog.set_level("INFO")
    summary = train(config)
    assert any("distilling from" in r.getMessage() for r in caplog.records)
    assert len(summary["losses"]) == 2 and all(math.isfinite(loss) for loss in summary["losses"])
    student = Classifier.from_pretrained(tmp_path / "student")
    assert student.config.num_hidden_layers == 1
    assert len(student.classify(["你好", "привет"])) == 2


def test_a_teacher_that_reads_other_inputs_is_refused_before_the_data_is_built(
    tiny_base_dir, tiny_model_dir, tmp_path, make_tiny_config, monkeypatch
):
    def no_data(config):
        raise AssertionError("the data was built before the teacher was checked")

    monkeypatch.setattr("tonewatch.training.train.build_training_data", no_data)
    config = make_tiny_config(tiny_base_dir, tmp_path / "student", max_length=40, teacher=str(tiny_model_dir))
    with pytest.raises(ValueError, match="must be the same"):
        train(config)


def test_distillation_loss_is_zero_only_when_the_student_matches_the_teacher():
    teacher_emotion, teacher_escalation = torch.tensor([[2.0, 0.0, -1.0, 0.5]]), torch.tensor([1.5])
    same = distillation_loss(teacher_emotion, teacher_escalation, teacher_emotion, teacher_escalation, 2.0)
    # The escalation term is a cross-entropy to soft targets: at a match it equals the targets' entropy.
    p = torch.sigmoid(teacher_escalation / 2.0)
    entropy = -(p * p.log() + (1 - p) * (1 - p).log()).item()
    assert same.item() == pytest.approx(entropy * 4.0, rel=1e-5)
    other = distillation_loss(torch.zeros(1, 4), torch.zeros(1), teacher_emotion, teacher_escalation, 2.0)
    assert other.item() > same.item() + 0.1


def batch(allowed, exact, escalate, weight=None):
    n = len(exact)
    return Batch(
        input_ids=torch.zeros((n, 1), dtype=torch.long),
        attention_mask=torch.ones((n, 1), dtype=torch.long),
        token_type_ids=torch.zeros((n, 1), dtype=torch.long),
        emotion_allowed=torch.tensor(allowed, dtype=torch.bool),
        emotion_exact=torch.tensor(exact),
        escalate=torch.tensor(escalate, dtype=torch.float),
        weight=torch.tensor(weight or [1.0] * n),
    )


def test_partial_labels_reward_mass_on_the_allowed_set_and_missing_labels_are_masked():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.2, 0.1], [0.7, 0.1, 0.1, 0.1]]))
    ones = torch.ones(4)
    exact = emotion_loss(logits, batch([[0, 1, 0, 0], [0, 0, 0, 0]], [1, -1], [-1, -1]), ones)
    assert exact.item() == pytest.approx(-math.log(0.6), rel=1e-4)
    partial = emotion_loss(logits, batch([[0, 1, 1, 0], [0, 0, 0, 0]], [-1, -1], [-1, -1]), ones)
    assert partial.item() == pytest.approx(-math.log(0.8), rel=1e-4)
    nothing = emotion_loss(logits, batch([[0, 0, 0, 0], [0, 0, 0, 0]], [-1, -1], [-1, -1]), ones)
    assert nothing.item() == 0.0


def test_escalation_loss_ignores_missing_labels():
    logits = torch.tensor([0.0, 100.0])
    only_first = escalation_loss(logits, batch([[0] * 4] * 2, [-1, -1], [1.0, -1.0]))
    assert only_first.item() == pytest.approx(math.log(2), rel=1e-4)


def test_sample_plan_follows_the_shares():
    sources = ["a"] * 10 + ["b"] * 1000
    plan = sample_plan(sources, {"a": 0.5, "b": 0.5}, steps=200, batch_size=10, seed=0)
    from_a = (plan < 10).mean()
    assert 0.4 < from_a < 0.6
    assert (plan == sample_plan(sources, {"a": 0.5, "b": 0.5}, 200, 10, seed=0)).all()


def test_a_run_records_the_resolved_data_root_and_fails_early_without_one(
    tiny_base_dir, tmp_path, make_tiny_config, monkeypatch
):
    from tonewatch.data.paths import DataRootNotFoundError

    monkeypatch.setenv("TONEWATCH_DATA", str(tmp_path))
    train(make_tiny_config(tiny_base_dir, tmp_path / "run", max_steps=1, eval_every=1))
    saved = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert saved["data_root"] == str(tmp_path.resolve())

    monkeypatch.delenv("TONEWATCH_DATA")
    needs_cold = make_tiny_config(tiny_base_dir, tmp_path / "cold-run", source_shares={"cold": 1.0})
    with pytest.raises(DataRootNotFoundError, match="no data root"):
        train(needs_cold)
    assert not (tmp_path / "cold-run").exists()


def test_length_grouping_keeps_each_windows_examples_and_pads_less():
    import numpy as np

    from tonewatch.training.train import group_by_length, sample_plan

    pools = ["short"] * 300 + ["long"] * 300
    lengths = np.array([8] * 300 + [90] * 300)
    plan = sample_plan(pools, {"short": 0.5, "long": 0.5}, steps=40, batch_size=16, seed=3)
    grouped = group_by_length(plan, lengths, group_steps=8, seed=3)
    assert grouped.shape == plan.shape
    for start in range(0, 40, 8):
        assert sorted(grouped[start : start + 8].ravel()) == sorted(plan[start : start + 8].ravel())
    assert lengths[grouped].max(axis=1).sum() < 0.8 * lengths[plan].max(axis=1).sum()
    assert (group_by_length(plan, lengths, 8, seed=3) == grouped).all()  # a resumed run redraws the same
    assert (group_by_length(plan, lengths, 1, seed=3) == plan).all()


def test_a_recipe_with_readers_writes_the_model_with_both_fitted(tiny_base_dir, tmp_path, make_tiny_config):
    from tonewatch.model.ngram_signals import EMOTION_NGRAM_FILE, NGRAM_FILE, READER_NAME

    config = make_tiny_config(
        tiny_base_dir, tmp_path / "run", max_steps=2, signal_reader="char_ngrams", emotion_reader="char_ngrams"
    )
    summary = train(config)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["signal_reader"] == READER_NAME and written["emotion_reader"] == READER_NAME
    for name in (NGRAM_FILE, EMOTION_NGRAM_FILE, "signal_reader.json", "emotion_reader.json", "training_config.json"):
        assert (tmp_path / "run" / name).is_file(), name
    assert set(summary["readers"]) == {"signal_reader", "emotion_reader"}
    recorded = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    fitted = summary["readers"]["emotion_reader"]
    assert recorded["readers"]["emotion_reader"]["train_records"] == fitted["train_records"] > 0
    assert not (tmp_path / "run.state" / "readers").exists()
    loaded = Classifier.from_pretrained(tmp_path / "run", backend="torch")
    assert loaded.config.emotion_reader == READER_NAME and set(loaded.classify(["你好"])[0].signals) >= {
        "supervisor_request"
    }


def test_an_unknown_reader_is_refused(tiny_base_dir, tmp_path, make_tiny_config):
    with pytest.raises(ValueError, match="emotion_reader must be one of"):
        make_tiny_config(tiny_base_dir, tmp_path / "run", emotion_reader="tfidf")
