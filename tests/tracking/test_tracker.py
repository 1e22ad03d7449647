"""Conversation tracker and alert policy, with scripted predictions (no model)."""

from __future__ import annotations

import dataclasses

import pytest

from tonewatch.labels import EMOTION_LABELS
from tonewatch.model.inputs import InputLimits
from tonewatch.model.types import Calibration, ModelConfig, Prediction, TurnInput
from tonewatch.tracking import AlertPolicy, ConversationTracker
from tonewatch.tracking.tracker import turn_risk


def predicted(label: str, score: float) -> Prediction:
    rest = 0.3 / (len(EMOTION_LABELS) - 1)
    scores = {name: (0.7 if name == label else rest) for name in EMOTION_LABELS}
    return Prediction(label, scores, score >= 0.5, score)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedClassifier:
    """Returns the scripted (label, score) of each text; records the inputs it was given."""

    def __init__(self, script: dict[str, tuple[str, float]], max_context_turns: int = 2):
        self.script = script
        self.inputs: list[TurnInput] = []
        self.config = ModelConfig(
            base_model="scripted",
            num_hidden_layers=1,
            hidden_size=8,
            limits=InputLimits(max_length=64, max_turn_tokens=32, max_context_turns=max_context_turns),
            calibration=Calibration(escalation_threshold=0.5, escalation_thresholds={"zh": 0.7}),
        )

    def classify(self, items, batch_size: int = 64) -> list[Prediction]:
        self.inputs.extend(items)
        return [predicted(*self.script[item.text]) for item in items]


def make_tracker(clock=None, **policy) -> ConversationTracker:
    settings = {"escalation_threshold": 0.5, "hysteresis": 0.2, "clear_turns": 2, "cooldown_turns": 2}
    settings["cooldown_seconds"] = 0.0
    settings.update(policy)
    return ConversationTracker("c1", policy=AlertPolicy(**settings), queue="billing", clock=clock or Clock())


def feed(tracker: ConversationTracker, script: list[tuple[str, float] | None]):
    """Customer turns with (label, score), agent turns for None; every event in order."""
    events = []
    for number, step in enumerate(script):
        if step is None:
            update = tracker.observe("agent", f"agent turn {number}")
        else:
            update = tracker.observe("customer", f"customer turn {number}", predicted(*step))
        if update.event is not None:
            events.append(update.event)
    return events


def test_one_episode_makes_exactly_one_alert_with_its_reason():
    tracker = make_tracker()
    events = feed(
        tracker,
        [None, ("calm", 0.1), None, ("frustrated", 0.3), None, ("angry", 0.7), None, ("angry", 0.8), ("angry", 0.9)],
    )
    assert [event.kind for event in events] == ["alert"]
    alert = events[0]
    assert (alert.reason, alert.label, alert.score, alert.threshold) == ("escalation", "angry", 0.7, 0.5)
    assert alert.turn_index == 5 and alert.text == "customer turn 5"
    assert alert.conversation_id == "c1" and alert.queue == "billing"
    state = tracker.state
    assert state.alert_active and state.alerts_raised == 1 and state.last_alert == alert
    assert state.most_severe_label == "angry" and state.current_label == "angry"
    assert state.first_escalation_turn == 5
    assert state.turns == 9 and state.customer_turns == 5


def test_scores_around_the_threshold_do_not_flap_thanks_to_hysteresis():
    tracker = make_tracker()
    # Raise at 0.5, clear only below 0.3: dips to 0.45 or 0.35 are not calm enough.
    events = feed(tracker, [("angry", 0.55), ("frustrated", 0.45), ("angry", 0.52), ("frustrated", 0.35)] * 3)
    assert [event.kind for event in events] == ["alert"]


def test_a_single_calm_turn_does_not_clear_and_calm_down_gives_one_all_clear():
    tracker = make_tracker()
    events = feed(tracker, [("angry", 0.8), ("calm", 0.1), ("angry", 0.6), ("calm", 0.1), ("frustrated", 0.2)])
    assert [event.kind for event in events] == ["alert", "all_clear"]
    clear = events[1]
    assert clear.reason == "calmed_down" and clear.turn_index == 4 and clear.threshold == pytest.approx(0.3)
    assert not tracker.state.alert_active
    # Staying calm sends nothing more.
    assert feed(tracker, [("calm", 0.05)] * 4) == []


def test_a_low_score_with_an_angry_label_does_not_count_towards_all_clear():
    tracker = make_tracker()
    events = feed(tracker, [("angry", 0.8), ("angry", 0.1), ("angry", 0.1), ("calm", 0.1)])
    assert [event.kind for event in events] == ["alert"]


def test_abusive_alerts_at_once_whatever_the_score():
    tracker = make_tracker()
    events = feed(tracker, [("calm", 0.1), ("abusive", 0.2)])
    assert [(event.kind, event.reason, event.label, event.turn_index) for event in events] == [
        ("alert", "abusive", "abusive", 1)
    ]
    # Abuse within the episode is the same episode.
    assert feed(tracker, [("abusive", 0.9), ("angry", 0.9)]) == []


def test_repeated_angry_turns_do_not_realert_within_the_cooldown_but_do_after_it():
    tracker = make_tracker(cooldown_turns=3)
    events = feed(tracker, [("angry", 0.8), ("calm", 0.1), ("calm", 0.1)])
    assert [event.kind for event in events] == ["alert", "all_clear"]
    # Three customer turns of cooldown after the all clear: held back...
    assert feed(tracker, [("angry", 0.8), None, ("angry", 0.8), ("angry", 0.9)]) == []
    assert not tracker.state.alert_active
    # ...then the episode that is still going on raises one alert.
    events = feed(tracker, [("angry", 0.8), ("angry", 0.9)])
    assert [(event.kind, event.reason) for event in events] == [("alert", "escalation")]
    assert tracker.state.alerts_raised == 2


def test_abusive_is_not_held_back_by_the_cooldown():
    tracker = make_tracker(cooldown_turns=5)
    feed(tracker, [("angry", 0.8), ("calm", 0.1), ("calm", 0.1)])
    events = feed(tracker, [("abusive", 0.4)])
    assert [(event.kind, event.reason) for event in events] == [("alert", "abusive")]


def test_cooldown_in_seconds_uses_the_clock():
    clock = Clock()
    tracker = make_tracker(clock=clock, cooldown_turns=0, cooldown_seconds=60.0)
    feed(tracker, [("angry", 0.8), ("calm", 0.1), ("calm", 0.1)])
    clock.now += 30
    assert feed(tracker, [("angry", 0.8)]) == []
    clock.now += 31
    assert [event.kind for event in feed(tracker, [("angry", 0.8)])] == ["alert"]


def test_a_held_back_alert_stays_pending_while_the_score_is_above_the_clear_threshold():
    tracker = make_tracker(cooldown_turns=1)
    feed(tracker, [("angry", 0.8), ("calm", 0.1), ("calm", 0.1)])
    assert feed(tracker, [("angry", 0.8)]) == []  # held back by the cooldown
    events = feed(tracker, [("frustrated", 0.45)])  # below raise (0.5), above clear (0.3): the episode goes on
    assert [(event.kind, event.score) for event in events] == [("alert", 0.45)]


def test_a_held_back_alert_is_forgotten_once_the_score_drops_below_the_clear_threshold():
    tracker = make_tracker(cooldown_turns=1)
    feed(tracker, [("angry", 0.8), ("calm", 0.1), ("calm", 0.1)])
    assert feed(tracker, [("angry", 0.8), ("calm", 0.1), ("frustrated", 0.4)]) == []
    # 0.4 is above the clear threshold but below the raise threshold: no pending episode any more.
    assert not tracker.state.alert_active


def test_per_language_thresholds_come_from_the_calibration_and_can_be_overridden():
    calibration = Calibration(escalation_threshold=0.5, escalation_thresholds={"zh": 0.7, "ru": 0.4})
    policy = AlertPolicy(escalation_thresholds={"ru": 0.45}, hysteresis=0.1).with_calibration(calibration)
    assert policy.raise_threshold("zh") == 0.7 and policy.raise_threshold("ru") == 0.45
    assert policy.raise_threshold(None) == 0.5 and policy.clear_threshold("zh") == pytest.approx(0.6)
    tracker = ConversationTracker("z", policy=policy, lang="zh")
    assert tracker.observe("customer", "t", predicted("angry", 0.65)).event is None
    assert tracker.observe("customer", "t", predicted("angry", 0.75)).event.threshold == 0.7
    russian = ConversationTracker("r", policy=policy, lang="ru")
    assert russian.observe("customer", "t", predicted("frustrated", 0.46)).event.kind == "alert"


def test_trend_follows_the_last_customer_turns():
    tracker = make_tracker()
    assert tracker.state.trend == "stable"
    feed(tracker, [("calm", 0.05), ("calm", 0.05)])
    assert tracker.state.trend == "stable"
    feed(tracker, [("angry", 0.8)])
    assert tracker.state.trend == "worsening"
    feed(tracker, [("angry", 0.8), ("angry", 0.8), ("calm", 0.05)])
    assert tracker.state.trend == "calming"
    assert turn_risk(predicted("abusive", 1.0)) > turn_risk(predicted("angry", 0.5)) > turn_risk(predicted("calm", 0))


def test_tracker_sends_the_preceding_turns_as_context_capped_to_what_the_model_reads():
    classifier = ScriptedClassifier(
        {"你好": ("calm", 0.1), "又断网了": ("frustrated", 0.3), "找你们领导!": ("angry", 0.9)}, max_context_turns=2
    )
    tracker = ConversationTracker.for_classifier(classifier, "z1", lang="zh", queue="net")
    assert tracker.add_turn("agent", "您好，请问有什么可以帮您？").prediction is None
    tracker.add_turn("customer", " 你好 ")
    tracker.add_turn("agent", "请稍等")
    tracker.add_turn("customer", "又断网了")
    update = tracker.add_turn("customer", "找你们领导!")
    assert classifier.inputs[0] == TurnInput("你好", (("agent", "您好，请问有什么可以帮您？"),), "zh")
    assert classifier.inputs[-1].context == (("agent", "请稍等"), ("customer", "又断网了"))
    # The zh threshold of the model's calibration (0.7) applies.
    assert update.alert is not None and update.alert.threshold == 0.7 and update.alert.text == "找你们领导!"
    assert update.state.queue == "net" and [turn.index for turn in update.state.recent_turns] == [0, 1, 2, 3, 4]


def test_without_a_language_a_turn_is_read_in_its_scripts_and_gets_that_languages_threshold():
    # The model's zh threshold is 0.7, its fallback 0.5: a Chinese turn at 0.6 must not alert, lang given or not.
    refund = "如果今天不给我退款，我就去消协投诉"
    classifier = ScriptedClassifier({refund: ("frustrated", 0.6), "OK!!!": ("angry", 0.6), "又断网了": ("angry", 0.8)})
    given = ConversationTracker.for_classifier(classifier, "given", lang="zh").add_turn("customer", refund)
    unsaid = ConversationTracker.for_classifier(classifier, "unsaid")
    update = unsaid.add_turn("customer", refund)
    assert classifier.inputs[-1].lang == "zh"  # what the model was told
    assert update.event is None and given.event is None
    assert update.escalation == given.escalation
    # A turn without Han or Cyrillic takes its context's language; the event says which one applied.
    assert unsaid.add_turn("customer", "OK!!!").event is None
    assert classifier.inputs[-1].lang == "zh"
    alert = unsaid.add_turn("customer", "又断网了").event
    assert alert is not None and (alert.threshold, alert.lang) == (0.7, "zh")
    assert unsaid.state.lang is None  # the state shows the language given, none here


def test_state_keeps_only_the_last_turns_and_serialises():
    tracker = ConversationTracker("c", policy=AlertPolicy(), keep_turns=3)
    feed(tracker, [("calm", 0.1), None, ("frustrated", 0.2), None, ("angry", 0.9)])
    state = tracker.state
    assert [turn.index for turn in state.recent_turns] == [2, 3, 4]
    data = state.to_dict()
    assert data["recent_turns"][-1]["prediction"]["emotion"] == "angry"
    assert data["last_alert"]["text"] == "customer turn 4"
    hidden = state.to_dict(include_text=False)
    assert hidden["last_alert"]["text"] is None and all(turn["text"] is None for turn in hidden["recent_turns"])
    ended = tracker.end("expired")
    assert (ended.kind, ended.reason, ended.alerts_raised, ended.most_severe_label) == ("ended", "expired", 1, "angry")


@pytest.mark.parametrize(
    "settings",
    [
        {"hysteresis": 1.5},
        {"clear_turns": 0},
        {"cooldown_turns": -1},
        {"escalation_thresholds": {"en": 0.5}},
        {"escalation_thresholds": {"zh": 1.5}},
        {"escalation_threshold": -0.1},
        {"immediate_labels": ("furious",)},
        {"clear_labels": ()},
        {"immediate_labels": ("angry",), "clear_labels": ("calm", "angry")},
        {"trend_window": 1},
    ],
)
def test_policy_rejects_bad_settings(settings):
    with pytest.raises(ValueError):
        AlertPolicy(**settings)


def test_tracker_rejects_bad_turns():
    tracker = ConversationTracker("c")
    with pytest.raises(ValueError, match="speaker"):
        tracker.observe("supervisor", "hi")
    with pytest.raises(ValueError, match="prediction"):
        tracker.observe("customer", "hi")
    with pytest.raises(ValueError, match="agent"):
        tracker.observe("agent", "hi", predicted("calm", 0.1))
    with pytest.raises(ValueError, match="empty"):
        tracker.observe("agent", "   ")
    with pytest.raises(ValueError, match="language"):
        tracker.observe("agent", "hi", lang="en")
    with pytest.raises(ValueError, match="classifier"):
        tracker.add_turn("customer", "hi")
    assert tracker.turns == 0


def test_on_event_publishes_every_event_and_its_numbered_copy_is_kept():
    published = []

    def publish(event):
        published.append(dataclasses.replace(event, id=len(published) + 1))
        return published[-1]

    tracker = ConversationTracker("c", policy=AlertPolicy(clear_turns=1), on_event=publish)
    alert = tracker.observe("customer", "t", predicted("abusive", 0.9)).event
    clear = tracker.observe("customer", "t", predicted("calm", 0.0)).event
    ended = tracker.end()
    assert [event.kind for event in published] == ["alert", "all_clear", "ended"]
    assert (alert.id, clear.id, ended.id) == (1, 2, 3) and tracker.state.last_alert.id == 1
