"""A few training steps of a tiny random model on the in-domain fixture data."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tonewatch.model.classifier import Classifier
from tonewatch.training.train import (
    Batch,
    distillation_loss,
    emotion_loss,
    escalation_loss,
    sample_plan,
    train,
)


def test_smoke_training_gives_finite_loss_and_a_loadable_directory(tiny_base_dir, tmp_path, caplog, make_tiny_config):
    tiny_train_config = make_tiny_config
    config = tiny_train_config(tiny_base_dir, tmp_path / "run", max_steps=2, model_version="3.1")
    caplog.set_level("INFO")
    summary = train(config)
    losses = [float(r.getMessage().split("loss ")[1].split()[0]) for r in caplog.records if " loss " in r.getMessage()]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert summary["best_step"] in (2,)
    for name in ("config.json", "model.safetensors", "training_config.json", "tokenizer.json"):
        assert (tmp_path / "run" / name).exists(), name
    saved = json.loads((tmp_path / "run" / "training_config.json").read_text())
    assert saved["max_steps"] == 2 and saved["base_model"] == str(tiny_base_dir)
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["architecture"] == "joint" and written["version"] == "3.1"
    predictions = Classifier.from_pretrained(tmp_path / "run").classify(["你好", "привет"])
    assert len(predictions) == 2 and all(math.isfinite(p.escalate_score) for p in predictions)

    # Resume: a longer run continues from the step-2 checkpoint instead of starting over.
    caplog.clear()
    longer = tiny_train_config(tiny_base_dir, tmp_path / "run", max_steps=4)
    train(longer, resume=True)
    assert any("resumed from step 2" in r.getMessage() for r in caplog.records)
    state = json.loads((tmp_path / "run" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4


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
    train(config)
    assert any("distilling from" in r.getMessage() for r in caplog.records)
    losses = [float(r.getMessage().split("loss ")[1].split()[0]) for r in caplog.records if " loss " in r.getMessage()]
    assert losses and all(math.isfinite(loss) for loss in losses)
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
