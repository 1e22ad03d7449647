from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tonewatch.data.records import NOT_ABUSIVE, Record
from tonewatch.training import metrics
from tonewatch.training.calibration import BIAS_GRID, fit_emotion_bias
from tonewatch.training.evaluate import (
    EvalConfig,
    Predictions,
    alert_timing,
    emotion_report,
    escalation_report,
    evaluate,
)


@pytest.fixture(scope="module")
def evaluated(tiny_model_dir, tiny_base_dir, tmp_path_factory, make_tiny_config):
    directory = tmp_path_factory.mktemp("eval") / "model"
    shutil.copytree(tiny_model_dir, directory)
    make_tiny_config(tiny_base_dir, directory).save(directory / "training_config.json")
    report = evaluate(directory, EvalConfig(public_sources=False))
    return directory, report


def test_report_files_and_in_domain_sections(evaluated):
    directory, report = evaluated
    for name in ("report.json", "report.md", "confusion.png", "reliability.png"):
        assert (directory / name).is_file(), name
    entry = report["sets"]["callcenter_dev"]
    model = entry["model"]
    assert model["emotion"]["exact"]["n"] == 810
    assert set(model["by_language"]) == {"zh", "ru"}
    assert model["alert_timing"]["conversations"] == 200
    assert model["escalation"]["n"] == 810 and model["escalation"]["positives"] == 240
    # The baseline is trained in the same run and scored on the same turns.
    assert entry["baseline"]["emotion"]["exact"]["n"] == 810
    assert entry["baseline"]["emotion"]["exact"]["macro_f1"] > 0.3
    markdown = (directory / "report.md").read_text()
    assert "| emotion macro-F1 | zh |" in markdown and "baseline" in markdown
    # Without the public sources: the in-domain sets, callcenter_dev and the held-out written conversations.
    written = json.loads((directory / "report.json").read_text())
    assert written["sets"].keys() == {"callcenter_dev", "callcenter_heldout"}
    # The ways of deciding escalation, on the conversation sets with gold escalation, in the suite and report.md.
    modes = report["escalation_modes"]
    assert modes.keys() == {"callcenter_dev", "callcenter_heldout", "probes"}
    assert modes["callcenter_dev"]["learnt"]["zh"]["n"] + modes["callcenter_dev"]["learnt"]["ru"]["n"] == 810
    assert modes["callcenter_dev"]["learnt"]["zh"]["f1"] == pytest.approx(
        model["by_language"]["zh"]["escalation"]["f1"]
    )  # the learnt mode is the head's own decision
    assert "escalation_modes/policy/callcenter_dev/ru/escalation_f1" in report["validation_suite"]["model"]
    assert "## How escalation is decided" in markdown


QUICK = {"public_sources": False, "onnx": False, "probes": False, "escalation_modes": False}
"""An evaluation of the in-domain set and the baseline only: seconds instead of a minute."""


@pytest.fixture
def seed7_model(tiny_model_dir, tiny_base_dir, tmp_path, make_tiny_config):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dir, directory)
    make_tiny_config(tiny_base_dir, directory, seed=7).save(directory / "training_config.json")
    return directory


def test_evaluating_again_writes_the_same_report_json_and_says_it_overwrites_the_report(seed7_model, caplog):
    caplog.set_level("INFO", logger="tonewatch.training.evaluate")
    evaluate(seed7_model, EvalConfig(**QUICK))
    first = (seed7_model / "report.json").read_text()
    assert f"writing report.json, report.md and plots in {seed7_model}" in caplog.messages
    caplog.clear()
    evaluate(seed7_model, EvalConfig(**QUICK))
    assert (seed7_model / "report.json").read_text() == first
    overwriting = "overwriting the existing report.json and report.md: writing report.json, report.md and plots in"
    assert f"{overwriting} {seed7_model}" in caplog.messages
    assert "Evaluation took" in (seed7_model / "report.md").read_text()  # the time is for people, not report.json


def test_evaluate_draws_subsets_and_baseline_with_the_runs_seed(seed7_model, tmp_path, monkeypatch):
    """train's report (evaluated with the run's seed) and a later ``tonewatch evaluate`` must pick the same
    public records: evaluate's seed defaults to the one in training_config.json."""
    import tonewatch.training.evaluate as evaluate_module

    directory = seed7_model
    seeds = []
    real_sets = evaluate_module.evaluation_sets

    def evaluation_sets(config, train_config):
        seeds.append(("sets", config.seed))
        return real_sets(config, train_config)

    class Baseline(evaluate_module.TfidfBaseline):  # records its seed; uniform scores (the real one is tested above)
        def __init__(self, seed):
            seeds.append(("baseline", seed))

        def fit(self, records):
            return self

        def predict(self, records):
            return Predictions(np.full((len(records), 4), 0.25), np.zeros(len(records)), np.zeros(len(records), bool))

    monkeypatch.setattr(evaluate_module, "evaluation_sets", evaluation_sets)
    monkeypatch.setattr(evaluate_module, "TfidfBaseline", Baseline)
    report = evaluate(directory, EvalConfig(**QUICK, output_dir=str(tmp_path / "a")))
    assert seeds == [("sets", 7), ("baseline", 7)] and report["seed"] == 7
    seeds.clear()
    evaluate(directory, EvalConfig(**QUICK, seed=3, output_dir=str(tmp_path / "b")))
    assert seeds == [("sets", 3), ("baseline", 3)]


def test_the_report_scores_the_escalation_probes_per_language_and_group(evaluated):
    directory, report = evaluated
    probes = report["probes"]
    assert set(probes) == {"zh", "ru"}
    for figures in probes.values():
        # 20 positive and 20 negative conversations per language; each positive has exactly one trigger turn.
        assert figures["trigger_turns"] == 20 and figures["negative_turns"] >= 20 and figures["held_turns"] > 0
    assert "## Escalation probes" in (directory / "report.md").read_text()


class GoldClassifier:
    """Predicts each customer turn's gold labels (emotion, escalate), or ``escalate_all`` for every turn."""

    def __init__(self, escalate_all: bool | None = None):
        self.escalate_all = escalate_all

    def classify_conversation(self, conversation):
        from tonewatch.model.classifier import Prediction

        predictions = []
        for turn in conversation["turns"]:
            if turn["speaker"] == "customer":
                escalate = turn["escalate"] if self.escalate_all is None else self.escalate_all
                predictions.append(Prediction(turn["emotion"], {turn["emotion"]: 1.0}, escalate, float(escalate)))
        return predictions


def customer(text, emotion="calm", escalate=False):
    return {"speaker": "customer", "text": text, "emotion": emotion, "escalate": escalate}


PROBES = [
    {"id": "ru-1", "lang": "ru", "probe": "trigger-calm", "turns": [
        customer("добрый день"), {"speaker": "agent", "text": "слушаю"},
        customer("соедините с руководителем", escalate=True),  # trigger
        customer("жду руководителя", "frustrated", escalate=True),  # held
        customer("спасибо, вопрос решён"),  # handled: in no group
    ]},
    {"id": "ru-2", "lang": "ru", "probe": "mention-no-trigger", "turns": [
        customer("руководитель уже всё одобрил"), customer("спасибо"),
    ]},
    {"id": "zh-1", "lang": "zh", "probe": "trigger-early", "turns": [customer("我要投诉到工信部", escalate=True)]},
]  # fmt: skip


def test_probe_report_groups_trigger_held_and_negative_turns_per_language():
    from tonewatch.training.probes import probe_report

    gold = probe_report(GoldClassifier(), PROBES)
    assert gold["ru"] == {
        "trigger_turns": 1, "trigger_escalated": 1.0, "trigger_mean_score": 1.0,
        "held_turns": 1, "held_escalated": 1.0, "held_mean_score": 1.0,
        "negative_turns": 2, "negative_escalated": 0.0, "negative_mean_score": 0.0,
        "emotion_accuracy": 1.0,
    }  # fmt: skip
    assert (gold["zh"]["trigger_turns"], gold["zh"]["held_turns"], gold["zh"]["negative_turns"]) == (1, 0, 0)
    everything = probe_report(GoldClassifier(escalate_all=True), PROBES)["ru"]
    assert [everything[f"{group}_escalated"] for group in ("trigger", "held", "negative")] == [1.0, 1.0, 1.0]


def record(i, conversation, **labels):
    return Record(id=f"r{i}", text="t", lang="zh", source="s", tier="eval", conversation_id=conversation, **labels)


def test_alert_timing_counts_early_late_missed_and_false_alarms():
    records = [
        record(0, "a", escalate=False), record(1, "a", escalate=True), record(2, "a", escalate=True),
        record(3, "b", escalate=False), record(4, "b", escalate=True),
        record(5, "c", escalate=False), record(6, "c", escalate=False),
        record(7, "d", escalate=True),
    ]  # fmt: skip
    fired = np.array([True, True, True, False, False, False, True, False])
    timing = alert_timing(records, Predictions(np.zeros((8, 4)), fired.astype(float), fired))
    assert timing["early"] == 1 and timing["missed"] == 2 and timing["false_alarm_conversations"] == 1
    assert timing["offset_histogram"] == {"-1": 1}


def test_emotion_report_exact_partial_and_abusive_vs_rest():
    records = [
        record(0, "a", emotion="abusive"),
        record(1, "b", emotion="calm"),
        record(2, "c", emotion_among=NOT_ABUSIVE),
    ]
    probabilities = np.array([[0, 0, 0, 1.0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])
    report = emotion_report(records, Predictions(probabilities, np.zeros(3), np.zeros(3, dtype=bool)))
    assert report["exact"]["accuracy"] == 0.5
    assert report["partial"]["prediction_in_allowed_set"] == 0.0
    assert report["abusive_vs_rest"]["precision"] == 0.5 and report["abusive_vs_rest"]["recall"] == 1.0


def test_escalation_report_ranks_by_score_decides_by_the_decision_and_skips_unlabelled_turns():
    records = [
        record(0, "a", escalate=True), record(1, "a", escalate=False), record(2, "b", escalate=True),
        record(3, "b", escalate=False), record(4, "c"),
    ]  # fmt: skip
    scores = np.array([0.9, 0.8, 0.7, 0.1, 0.99])
    report = escalation_report(records, Predictions(np.zeros((5, 4)), scores, scores >= 0.5))
    assert (report["n"], report["positives"]) == (4, 2)
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == 1.0 and report["f1"] == 0.8
    # Ranked by score: a hit at 0.9 (precision 1), a miss, a hit at 0.7 (precision 2/3).
    assert report["pr_auc"] == pytest.approx((1 + 2 / 3) / 2)
    only_positives = escalation_report(records[:1], Predictions(np.zeros((1, 4)), scores[:1], scores[:1] >= 0.5))
    assert only_positives["pr_auc"] is None


def test_expected_calibration_error():
    assert metrics.expected_calibration_error(np.array([0.9, 0.9]), np.array([1, 1])) == pytest.approx(0.1)
    assert metrics.expected_calibration_error(np.array([]), np.array([])) == 0.0


def _shifted_problem(shift: float = 0.8, n: int = 300):
    """Labels drawn from softmax(log p + shift on label 3): the model under-predicts label 3 by ``shift``."""
    rng = np.random.default_rng(7)
    log_probabilities = np.log(rng.dirichlet(np.ones(4) * 0.7, size=n))
    truth = log_probabilities + np.array([0.0, 0.0, 0.0, shift])
    probabilities = np.exp(truth) / np.exp(truth).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=row) for row in probabilities])
    return log_probabilities, labels


def test_emotion_bias_fit_favours_the_under_predicted_label():
    log_probabilities, labels = _shifted_problem()
    single = fit_emotion_bias(log_probabilities, labels, bootstraps=0)
    bagged = fit_emotion_bias(log_probabilities, labels, bootstraps=5)
    for bias in (single, bagged):
        assert len(bias) == 4 and all(min(BIAS_GRID) <= value <= max(BIAS_GRID) for value in bias)
        assert bias[3] - max(bias[:3]) > 0  # the shifted label gets the largest relative boost
    assert bagged == fit_emotion_bias(log_probabilities, labels, bootstraps=5)  # seeded: reproducible
    assert bagged != fit_emotion_bias(log_probabilities, labels, bootstraps=5, seed=1)
