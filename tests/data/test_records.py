from __future__ import annotations

import pytest

from tonewatch.data.records import NOT_ABUSIVE, Record, Turn


def make(**overrides) -> Record:
    fields = {"id": "r1", "text": "请问我的话费还剩多少", "lang": "zh", "source": "test", "tier": "train"}
    fields.update(overrides)
    return Record(**fields)


def test_defaults_and_derived_fields():
    record = make(context=(Turn("agent", "您好"),), emotion="calm", escalate=False)
    assert record.conversation_id == "r1"
    assert record.emotion_key == "calm"
    assert record.has_emotion


def test_partial_labels_are_canonically_ordered():
    record = make(emotion_among=("angry", "calm", "frustrated"))
    assert record.emotion_among == NOT_ABUSIVE
    assert record.emotion_key == "calm|frustrated|angry"
    assert record.emotion is None and record.has_emotion


def test_missing_labels_stay_missing():
    record = make(text="Подскажите, пожалуйста, тариф", lang="ru")
    assert record.emotion is None and record.escalate is None and not record.has_emotion
    assert record.emotion_key == "-"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"text": "  "}, "empty text"),
        ({"lang": "en"}, "unknown language"),
        ({"tier": "test"}, "unknown tier"),
        ({"emotion": "furious"}, "unknown emotion"),
        ({"emotion": "calm", "emotion_among": ("calm", "frustrated")}, "not both"),
        ({"emotion_among": ("angry",)}, "exact emotion"),
        ({"emotion_among": ("angry", "rage")}, "unknown labels"),
        ({"weight": -1.0}, "negative weight"),
    ],
)
def test_invalid_records_raise(overrides, message):
    with pytest.raises(ValueError, match=message):
        make(**overrides)


def test_turn_rejects_unknown_speaker():
    with pytest.raises(ValueError, match="unknown speaker"):
        Turn("supervisor", "hello")
