from __future__ import annotations

import json

import pytest

from tonewatch.data.conversations import (
    ConversationFormatError,
    conversation_records,
    iter_jsonl,
    read_conversations,
)

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


@pytest.mark.parametrize(
    ("conversation", "message"),
    [
        ([], "JSON object"),
        ({"turns": []}, "non-empty 'id'"),
        ({"id": "a", "turns": []}, "non-empty list"),
        ({"id": "a", "lang": "en", "turns": [{"speaker": "customer", "text": "hi"}]}, "unknown lang"),
        ({"id": "a", "turns": [{"speaker": "bot", "text": "hi"}]}, "speaker must be"),
        ({"id": "a", "turns": [{"speaker": "customer", "text": " "}]}, "non-empty string"),
        ({"id": "a", "turns": [{"speaker": "customer", "text": "x", "emotion": "mad"}]}, "unknown emotion"),
        ({"id": "a", "turns": [{"speaker": "customer", "text": "x", "escalate": "yes"}]}, "true or false"),
    ],
)
def test_invalid_conversations_are_rejected(conversation, message):
    with pytest.raises(ConversationFormatError, match=message):
        conversation_records(conversation, source="s", tier="eval", default_lang="zh")


def test_read_conversations_reports_the_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CONVERSATION, ensure_ascii=False) + "\n\n{not json\n", encoding="utf-8")
    lines = list(iter_jsonl(path))
    assert [line.line_number for line in lines] == [1, 3]
    assert lines[1].error is not None and lines[0].value["id"] == "ru-x-1"
    with pytest.raises(ConversationFormatError, match=r"c\.jsonl:3: invalid JSON"):
        read_conversations(path)
