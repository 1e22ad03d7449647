from __future__ import annotations

import pytest

from tonewatch.conversations import ConversationFormatError
from tonewatch.data.records import NOT_ABUSIVE, Record, Turn, conversation_records


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


CONVERSATION = {
    "id": "ru-x-1",
    "lang": "ru",
    "channel": "chat",
    "turns": [
        {"speaker": "agent", "text": "Здравствуйте, чем могу помочь?"},
        {"speaker": "customer", "text": "Опять не работает интернет", "emotion": "frustrated", "escalate": False},
        {"speaker": "agent", "text": "Приношу извинения, проверяю"},
        {"speaker": "customer", "text": "Позовите руководителя!", "emotion": "angry", "escalate": True},
        {"speaker": "customer", "text": "ну"},
    ],
}


def test_customer_turns_become_records_with_all_earlier_turns_as_context():
    records = conversation_records(CONVERSATION, source="callcenter_train", tier="train")
    assert [record.id for record in records] == ["ru-x-1:1", "ru-x-1:3", "ru-x-1:4"]
    assert [len(record.context) for record in records] == [1, 3, 4]
    assert records[1].context[-1].speaker == "agent"
    assert records[2].context[-1].text == "Позовите руководителя!"
    assert [record.emotion for record in records] == ["frustrated", "angry", None]
    assert [record.escalate for record in records] == [False, True, None]
    assert {record.conversation_id for record in records} == {"ru-x-1"}
    assert records[0].meta == {"channel": "chat"}


def test_language_falls_back_to_default_or_fails():
    conversation = {key: value for key, value in CONVERSATION.items() if key != "lang"}
    assert conversation_records(conversation, source="s", tier="eval", default_lang="ru")[0].lang == "ru"
    with pytest.raises(ConversationFormatError, match="no 'lang'"):
        conversation_records(conversation, source="s", tier="eval")


def test_a_conversation_out_of_format_gives_no_records():
    bad = {**CONVERSATION, "turns": [{"speaker": "bot", "text": "hi"}]}
    with pytest.raises(ConversationFormatError, match="speaker must be"):
        conversation_records(bad, source="s", tier="eval")
