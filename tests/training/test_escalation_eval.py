"""The comparison of the ways of deciding escalation (learnt head, policy, both) that ``tonewatch evaluate`` reports."""

from __future__ import annotations

import pytest

from tonewatch.labels import AGENT_SIGNALS, CUSTOMER_SIGNALS, EMOTION_LABELS
from tonewatch.model.types import Prediction
from tonewatch.training.escalation_eval import (
    MODES,
    decisions,
    escalation_mode_lines,
    escalation_modes_report,
    probe_figures,
    suite_figures,
    timing_figures,
    turn_figures,
)


def _prediction(emotion: str, score: float, **signals: float) -> Prediction:
    scores = {label: (1.0 if label == emotion else 0.0) for label in EMOTION_LABELS}
    return Prediction(emotion, scores, score >= 0.5, score, {name: signals.get(name, 0.0) for name in CUSTOMER_SIGNALS})


class ScriptedClassifier:
    """Gives each customer turn the prediction scripted by its text, each agent turn no signal."""

    signal_names = (*CUSTOMER_SIGNALS, *(f"agent:{name}" for name in AGENT_SIGNALS))

    def __init__(self, script: dict[str, Prediction]):
        self.script = script

    def classify(self, items, batch_size=64):
        return [self.script[item.text] for item in items]

    def agent_signals(self, items, batch_size=64):
        return [{name: 0.0 for name in AGENT_SIGNALS} for _ in items]


def _conversation(lang: str, *customer: tuple[str, bool]) -> dict:
    turns = []
    for text, escalate in customer:
        turns += [{"speaker": "agent", "text": "hello"}, {"speaker": "customer", "text": text, "escalate": escalate}]
    return {"id": text, "lang": lang, "turns": turns}


def test_a_calm_supervisor_request_escalates_by_the_policy_not_by_a_low_learnt_score():
    classifier = ScriptedClassifier(
        {
            "please put your supervisor on": _prediction("calm", 0.1, supervisor_request=0.9),
            "thanks": _prediction("calm", 0.1),
            "you thief": _prediction("abusive", 0.2),
        }
    )
    conversations = [
        _conversation("ru", ("please put your supervisor on", True), ("thanks", True)),
        _conversation("ru", ("thanks", False), ("you thief", True)),
    ]
    result = decisions(classifier, conversations)
    assert set(result) == set(MODES)
    assert result["learnt"] == [[False, False], [False, False]]
    # the request stays pending over the calm "thanks" (one calm turn does not clear it); the abusive turn
    # escalates by the abuse rule
    assert result["policy"] == [[True, True], [False, True]]
    assert result["policy_or_learnt"] == result["policy"]


def test_turn_figures_count_only_turns_with_a_gold_label():
    golds = [[True, False, None], [False, True]]
    decided = [[True, True, True], [False, False]]
    figures = turn_figures(golds, decided)
    assert figures["n"] == 4 and figures["positives"] == 2
    assert figures["precision"] == pytest.approx(0.5) and figures["recall"] == pytest.approx(0.5)
    assert figures["f1"] == pytest.approx(0.5)


def test_timing_figures_place_the_first_alert_against_the_gold_first_turn():
    golds = [[False, True, True], [False, False, True], [False, True], [False, False], [False, False]]
    decided = [[False, True, True], [True, False, False], [False, False], [False, True], [False, False]]
    timing = timing_figures(golds, decided)
    assert timing["with_gold_escalation"] == 3
    assert timing["on_time"] == 1  # conversation 1
    assert timing["within_one_turn"] == 1  # conversation 2 fired two turns early
    assert timing["missed"] == 1
    assert timing["false_alarm_conversations"] == 1 and timing["correctly_quiet"] == 1
    assert timing["within_one_turn_share"] == pytest.approx(1 / 3)


def test_probe_figures_group_trigger_held_and_negative_turns():
    trigger = {
        "lang": "zh",
        "probe": "trigger-calm",
        "turns": [
            {"speaker": "customer", "text": "a", "escalate": False},
            {"speaker": "customer", "text": "b", "escalate": True},
            {"speaker": "customer", "text": "c", "escalate": True},
        ],
    }
    negative = {"lang": "zh", "probe": "mention-no-trigger", "turns": [{"speaker": "customer", "text": "d"}]}
    figures = probe_figures([trigger, negative], [[True, True, False], [True]])
    assert figures["trigger_turns"] == 1 and figures["trigger_escalated"] == 1.0
    assert figures["held_turns"] == 1 and figures["held_escalated"] == 0.0
    assert figures["negative_turns"] == 1 and figures["negative_escalated"] == 1.0


def test_the_report_scores_every_mode_on_a_real_signal_model(tiny_signal_model_dir):
    from tonewatch.model.classifier import Classifier

    classifier = Classifier.from_pretrained(tiny_signal_model_dir, backend="torch")
    conversations = [
        _conversation("zh", ("我要投诉你们", True), ("好的", True)),
        _conversation("ru", ("позовите руководителя", True), ("спасибо", False)),
    ]
    probes = [{**conversations[0], "probe": "trigger-early"}]
    report = escalation_modes_report(classifier, {"callcenter_dev": conversations, "probes": probes})
    assert set(report["callcenter_dev"]) == set(MODES)
    assert set(report["callcenter_dev"]["policy"]) == {"ru", "zh"}
    assert report["callcenter_dev"]["learnt"]["zh"]["n"] == 2
    assert report["probes"]["policy"]["zh"]["trigger_turns"] == 1
    figures = suite_figures(report)
    assert "escalation_modes/policy/callcenter_dev/zh/escalation_f1" in figures
    assert "escalation_modes/policy_or_learnt/probes/zh/trigger_escalated" in figures
    lines = "\n".join(escalation_mode_lines(report))
    assert "| callcenter_dev | ru | policy |" in lines and "| zh | learnt |" in lines
