"""The project's conversation format: JSONL, one conversation per line.

This is the format of ``callcenter_dev`` and the public input/output format
of ``tonewatch label``::

    {"id": "zh-dev-0001", "lang": "zh", "domain": "telecom", "channel": "voice",
     "turns": [
       {"speaker": "agent", "text": "您好，请问有什么可以帮您？"},
       {"speaker": "customer", "text": "...", "emotion": "frustrated", "escalate": false},
       ...]}

``id`` and ``turns`` are required; ``lang`` is optional for input (``zh`` or
``ru``; without it the language is read from the turns' script, :func:`conversation_lang`);
every turn has a ``speaker`` (``customer`` or ``agent``) and a non-empty ``text``.
Customer turns may carry gold ``emotion`` and ``escalate`` labels. Any other
field is kept untouched by every reader and writer of this package.

This module is the wire format only (it imports no other part of tonewatch
but the label scheme): the data layer turns conversations into training
records (``tonewatch.data.records.conversation_records``), the model layer
into turns to classify (``tonewatch.model.types.conversation_turn_inputs``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tonewatch.labels import EMOTION_LABELS, LANGUAGES, SPEAKERS, detect_lang


class ConversationFormatError(ValueError):
    """A conversation does not follow the project's format."""


@dataclass(frozen=True)
class JsonlLine:
    """One non-blank line of a JSONL file: its 1-based number and parsed value (or the parse error)."""

    line_number: int
    value: Any = None
    error: str | None = None


def iter_jsonl(path: str | Path) -> Iterator[JsonlLine]:
    """Every non-blank line of ``path``, parsed; unparsable lines are yielded with their error, not skipped."""
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield JsonlLine(line_number, json.loads(line))
            except json.JSONDecodeError as error:
                yield JsonlLine(line_number, error=f"invalid JSON: {error.msg} (column {error.colno})")


def conversation_lang(conversation: dict) -> str | None:
    """The language of ``conversation``: its ``lang``, else the one its turns' script says
    (:func:`~tonewatch.labels.detect_lang` over every turn's text), else ``None``."""
    lang = conversation.get("lang")
    if lang:
        return lang
    return detect_lang(*(turn.get("text") or "" for turn in conversation.get("turns") or ()))


def validate_conversation(conversation: Any, *, gold_labels: bool = True) -> dict:
    """Check ``conversation`` against the format; return it unchanged or raise :class:`ConversationFormatError`.

    ``gold_labels=False`` checks the structure only (an id, turns with a speaker and text): what a model needs
    to label it. The gold ``emotion``/``escalate`` fields are then not checked; see :func:`gold_label_problems`.
    """
    if not isinstance(conversation, dict):
        raise ConversationFormatError(f"a conversation is a JSON object, got {type(conversation).__name__}")
    conversation_id = conversation.get("id")
    if not isinstance(conversation_id, str | int) or conversation_id == "":
        raise ConversationFormatError("conversation needs a non-empty 'id'")
    lang = conversation.get("lang")
    if lang is not None and lang not in LANGUAGES:
        raise ConversationFormatError(f"conversation {conversation_id}: unknown lang {lang!r}; expected {LANGUAGES}")
    turns = conversation.get("turns")
    if not isinstance(turns, list) or not turns:
        raise ConversationFormatError(f"conversation {conversation_id}: 'turns' must be a non-empty list")
    for index, turn in enumerate(turns):
        where = f"conversation {conversation_id}, turn {index}"
        if not isinstance(turn, dict):
            raise ConversationFormatError(f"{where}: a turn is a JSON object")
        if turn.get("speaker") not in SPEAKERS:
            raise ConversationFormatError(f"{where}: speaker must be one of {SPEAKERS}, got {turn.get('speaker')!r}")
        text = turn.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ConversationFormatError(f"{where}: 'text' must be a non-empty string")
    if gold_labels:
        problems = gold_label_problems(conversation)
        if problems:
            raise ConversationFormatError(problems[0])
    return conversation


def gold_label_problems(conversation: dict) -> list[str]:
    """What is wrong with the gold labels (``emotion``, ``escalate``) of a structurally valid conversation,
    one message per bad field; empty when they are all valid or absent."""
    problems = []
    for index, turn in enumerate(conversation["turns"]):
        where = f"conversation {conversation['id']}, turn {index}"
        emotion = turn.get("emotion")
        if emotion is not None and emotion not in EMOTION_LABELS:
            problems.append(f"{where}: unknown emotion {emotion!r}; expected one of {EMOTION_LABELS}")
        escalate = turn.get("escalate")
        if escalate is not None and not isinstance(escalate, bool):
            problems.append(f"{where}: 'escalate' must be true or false")
    return problems


def read_conversations(path: str | Path) -> list[dict]:
    """All conversations of a JSONL file, validated; the first bad line raises with its line number."""
    conversations = []
    for line in iter_jsonl(path):
        if line.error is not None:
            raise ConversationFormatError(f"{path}:{line.line_number}: {line.error}")
        try:
            conversations.append(validate_conversation(line.value))
        except ConversationFormatError as error:
            raise ConversationFormatError(f"{path}:{line.line_number}: {error}") from None
    return conversations
