"""A tracker's snapshot: restored after any turn (through JSON), it continues exactly as the original."""

from __future__ import annotations

import json
import random

import pytest

from tonewatch.labels import CUSTOMER_SIGNALS, EMOTION_LABELS
from tonewatch.model.types import Prediction
from tonewatch.tracking import AlertPolicy, ConversationTracker


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def random_turn(rng: random.Random):
    """A random agent turn (signals) or customer turn (prediction with signals)."""
    if rng.random() < 0.4:
        signals = {name: rng.random() for name in ("apology_or_offer", "refusal", "abuse_warning")}
        return "agent", None, signals
    label = rng.choice(EMOTION_LABELS)
    rest = 0.3 / (len(EMOTION_LABELS) - 1)
    scores = {name: (0.7 if name == label else rest) for name in EMOTION_LABELS}
    score = rng.random()
    signals = {name: rng.random() ** 3 for name in CUSTOMER_SIGNALS}
    return "customer", Prediction(label, scores, score >= 0.5, score, signals), None


def new_tracker(clock: Clock, events: list) -> dict:
    policy = AlertPolicy(escalation_threshold=0.5, cooldown_turns=1, cooldown_seconds=20.0)
    return {"policy": policy, "max_context_turns": 3, "keep_turns": 4, "clock": clock, "wall_clock": clock}


def feed(tracker: ConversationTracker, turns, clock: Clock) -> list[dict]:
    out = []
    for number, (speaker, prediction, signals) in enumerate(turns):
        clock.now += 7.0
        update = tracker.observe(speaker, f"turn {number}", prediction, lang="ru", signals=signals)
        out.append({"state": update.state.to_dict(), "event": update.event.to_dict() if update.event else None})
    return out


@pytest.mark.parametrize("seed", range(8))
def test_restored_tracker_continues_as_the_original(seed: int):
    rng = random.Random(seed)
    turns = [random_turn(rng) for _ in range(24)]
    cut = rng.randrange(1, len(turns))
    clock = Clock()
    original = ConversationTracker("c1", queue="billing", team="t1", **new_tracker(clock, []))
    feed(original, turns[:cut], clock)
    data = json.loads(json.dumps(original.snapshot()))  # what a store writes and reads back
    restored = ConversationTracker.restore(data, **new_tracker(clock, []))
    assert restored.state == original.state
    resumed_at = clock.now
    expected = feed(original, turns[cut:], clock)
    clock.now = resumed_at
    assert feed(restored, turns[cut:], clock) == expected
    assert restored.snapshot() == original.snapshot()


def test_restore_refuses_an_unknown_snapshot_version():
    tracker = ConversationTracker("c1")
    data = {**tracker.snapshot(), "version": 99}
    with pytest.raises(ValueError, match="snapshot version"):
        ConversationTracker.restore(data)


def test_numbered_keeps_the_published_id_as_the_last_alert():
    clock = Clock()
    tracker = ConversationTracker("c1", **new_tracker(clock, []))
    rest = 0.3 / (len(EMOTION_LABELS) - 1)
    scores = {name: (0.7 if name == "abusive" else rest) for name in EMOTION_LABELS}
    update = tracker.observe("customer", "x", Prediction("abusive", scores, True, 0.9))
    assert update.event is not None and update.event.id == 0
    numbered = tracker.numbered(update.event.__class__(**{**update.event.__dict__, "id": 41}))
    assert numbered.id == 41 and tracker.state.last_alert.id == 41
