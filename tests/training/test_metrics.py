"""The shared first-alert count behind the report's alert timing and the escalation-mode comparison."""

from __future__ import annotations

from tonewatch.training.metrics import first_alerts


def test_first_alerts_counts_offsets_misses_false_alarms_and_quiet_conversations():
    gold = [
        [False, True, True],  # escalates at turn 1, alerted at 2: late by one
        [True, True],  # alerted at 0: on time
        [False, None, True],  # a missing gold label is not an escalation; alerted early at 0
        [False, True],  # never alerted: missed
        [False, False],  # alerted: a false alarm
        [None, False],  # quiet
    ]
    decided = [[False, False, True], [True, False], [True, True, True], [False, False], [False, True], [0, 0]]
    assert first_alerts(gold, decided) == {
        "offsets": [1, 0, -2],
        "missed": 1,
        "false_alarm_conversations": 1,
        "correctly_quiet": 1,
    }


def test_the_report_classifies_each_turn_once_and_gives_the_same_predictions(tiny_model_dir):
    from tonewatch.model.classifier import Classifier
    from tonewatch.model.types import TurnInput
    from tonewatch.training.evaluate import RememberingClassifier

    classifier = Classifier.from_pretrained(tiny_model_dir, backend="torch")
    remembering = RememberingClassifier(classifier)
    calls = []
    backend = classifier.backend
    classifier.backend = lambda *arrays, **options: calls.append(len(arrays[0])) or backend(*arrays, **options)
    turns = [TurnInput("позовите старшего", (("agent", "нет"),), "ru"), TurnInput("请问", (), "zh")]
    counted = []
    first = remembering.classify(turns, on_batch=counted.append)
    conversation = {"lang": "ru", "turns": [{"speaker": "agent", "text": "нет"},
                                            {"speaker": "customer", "text": "позовите старшего"}]}  # fmt: skip
    again = remembering.classify_conversation(conversation)
    assert calls == [2] and sum(counted) == 2  # the conversation's turn was the first item: no second pass
    assert again == [first[0]] and first == classifier.classify(turns)
    assert remembering.config is classifier.config  # everything else is the classifier's
