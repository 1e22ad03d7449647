"""The conversation wire format: validation and JSONL reading with line numbers."""

from __future__ import annotations

import json

import pytest

from tonewatch.conversations import (
    ConversationFormatError,
    conversation_lang,
    gold_label_problems,
    iter_jsonl,
    read_conversations,
    validate_conversation,
)

CONVERSATION = {
    "id": "zh-x-1",
    "lang": "zh",
    "domain": "telecom",
    "turns": [
        {"speaker": "agent", "text": "您好，请问有什么可以帮您？"},
        {"speaker": "customer", "text": "又断网了，叫你们经理来！", "emotion": "angry", "escalate": True, "asr": 0.9},
    ],
}


def test_a_valid_conversation_is_returned_unchanged_with_every_field():
    assert validate_conversation(CONVERSATION) is CONVERSATION
    assert validate_conversation({"id": 7, "turns": [{"speaker": "customer", "text": "привет"}]})["id"] == 7


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
        validate_conversation(conversation)


def test_gold_labels_can_be_left_unchecked_and_are_listed_apart():
    conversation = {"id": "a", "turns": [
        {"speaker": "customer", "text": "x", "emotion": "mad", "escalate": "yes"},
        {"speaker": "customer", "text": "y", "emotion": "angry", "escalate": True},
    ]}  # fmt: skip
    assert validate_conversation(conversation, gold_labels=False) is conversation
    assert gold_label_problems(conversation) == [
        "conversation a, turn 0: unknown emotion 'mad'; expected one of ('calm', 'frustrated', 'angry', 'abusive')",
        "conversation a, turn 0: 'escalate' must be true or false",
    ]
    with pytest.raises(ConversationFormatError, match="non-empty list"):  # the structure is still checked
        validate_conversation({"id": "a", "turns": []}, gold_labels=False)


def test_read_conversations_reports_the_bad_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(CONVERSATION, ensure_ascii=False) + "\n\n{not json\n", encoding="utf-8")
    lines = list(iter_jsonl(path))
    assert [line.line_number for line in lines] == [1, 3]
    assert lines[1].error is not None and lines[0].value == CONVERSATION
    with pytest.raises(ConversationFormatError, match=r"c\.jsonl:3: invalid JSON"):
        read_conversations(path)


def test_a_conversation_without_lang_is_read_in_its_scripts_language():
    assert conversation_lang(CONVERSATION) == "zh"
    assert conversation_lang({**CONVERSATION, "lang": "ru"}) == "ru"  # a given lang always wins
    turns = [{"speaker": "agent", "text": "Здравствуйте"}, {"speaker": "customer", "text": "OK!!!"}]
    assert conversation_lang({"id": 1, "turns": turns}) == "ru"  # the agent's turn tells
    assert conversation_lang({"id": 1, "lang": None, "turns": [{"speaker": "customer", "text": "OK"}]}) is None
