"""The API's request and response bodies as pydantic models: the OpenAPI schema (``/openapi.json``) is built from them.

Responses are built as plain dicts by the routes (``Prediction.to_dict``,
``ConversationState.to_dict``, ...) and checked against these models by
FastAPI on the way out, so the schema is what the server actually sends.
Every error is an :class:`ErrorBody`; :func:`error_responses` documents the
typed errors of an operation.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Literal

from fastapi import Path as PathParameter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from tonewatch.labels import EMOTION_LABELS, LANGUAGES, SPEAKERS
from tonewatch.serve.errors import is_clean_json
from tonewatch.tracking import EVENT_KINDS, REASONS, TRENDS

CONVERSATION_ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f/\ufffd]+$"
"""No control characters, no '/', no U+FFFD (what a server makes of bytes that are not UTF-8: two different
paths would be one id; the server also refuses such paths, serve/guards.py)."""
LABEL_LENGTH = 100
UNPRINTABLE_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")
"""What a queue or team name may not hold: control, format (zero-width, bidi), surrogate and line separator
characters. They would break or disguise log lines and the dashboard."""

Lang = Literal[LANGUAGES]  # type: ignore[valid-type]  # the one tuple of languages, as a Literal
Emotion = Literal[EMOTION_LABELS]  # type: ignore[valid-type]
Speaker = Literal[SPEAKERS]  # type: ignore[valid-type]
Reason = Literal[REASONS]  # type: ignore[valid-type]
ConversationId = Annotated[
    str,
    PathParameter(
        min_length=1,
        max_length=128,
        pattern=CONVERSATION_ID_PATTERN,
        description="The caller's id of the conversation (1-128 characters, no control characters, '/' or U+FFFD; "
        "sent as UTF-8).",
    ),
]


class _Response(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors -----------------------------------------------------------------------------------------------------


class ErrorBody(_Response):
    """Every error the server answers, 4xx and 5xx alike."""

    error: str = Field(description="What went wrong, in one line.")
    error_type: str = Field(
        description="Stable machine-readable kind: e.g. unauthorized, forbidden, not_ready, capacity_exceeded, "
        "unknown_conversation, conversation_ended, empty_text, text_too_long, invalid_text, invalid_json, "
        "invalid_encoding, invalid_host, invalid_conversation, too_many_items, unknown_field, unknown_speaker, "
        "unknown_lang, validation_error, missing_body, body_too_large, unsupported_media_type, internal_error."
    )


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read (invalid JSON or UTF-8).",
    401: "No API key, or an unknown one (only when API keys are configured).",
    403: "The API key lacks the scope this operation needs.",
    404: "No live conversation with this id (never started, ended or expired).",
    409: "The conversation ended while this turn was being added.",
    413: "The body is over max_body_bytes.",
    415: "The body is not sent as JSON.",
    422: "The request is well-formed JSON but invalid (error_type says how).",
    500: "A bug in the server (logged with its traceback); the request may be retried.",
    503: "The model is not loaded (yet); Retry-After says when to try again.",
}


def error_responses(*statuses: int, json_route: bool = True, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for an operation: each status (and 500) documented with the :class:`ErrorBody` schema.

    ``descriptions`` overrides the default description of a status, keyed ``s503="..."``. An operation whose
    answer is not JSON (``json_route=False``) refers to the schema by name: FastAPI would document a ``model``
    in the operation's own media type, while errors are always JSON.
    """
    documented: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500}):
        description = descriptions.get(f"s{status}", ERROR_DESCRIPTIONS[status])
        if json_route:
            documented[status] = {"model": ErrorBody, "description": description}
        else:
            schema = {"$ref": f"#/components/schemas/{ErrorBody.__name__}"}
            documented[status] = {"description": description, "content": {"application/json": {"schema": schema}}}
    return documented


AUTH_ERRORS = (401, 403)
BODY_ERRORS = (400, 413, 415, 422)


# -- predictions, events, conversation states ----------------------------------------------------------------


class EscalationBody(_Response):
    """The escalation policy's decision after a customer turn of a conversation (docs/labels.md's rules)."""

    escalate: bool = Field(description="Whether a supervisor should be alerted now.")
    score: float = Field(description="Strength of the evidence in [0, 1].")
    reasons: list[Reason] = Field(description="The active reasons (rule names), most recent first.")
    since_turn: dict[Reason, int] = Field(description="For each reason, the index of the turn that set it off.")


class PredictionBody(_Response):
    """The model's prediction for one customer turn or text."""

    emotion: Emotion = Field(description="The most probable emotion label.")
    scores: dict[Emotion, float] = Field(description="Probability of every emotion label (they sum to 1).")
    escalate: bool = Field(description="Whether escalate_score reaches the model's threshold for the language.")
    escalate_score: float = Field(description="Escalation probability in [0, 1] (the learnt escalation head).")
    signals: dict[str, float] | None = Field(
        default=None, description="Probabilities of the customer-turn signals (only from a model with a signal head)."
    )
    escalation: EscalationBody | None = Field(
        default=None,
        description="The escalation policy's decision: for a turn read in its conversation, or for a text (a "
        "conversation of that one turn).",
    )
    windows: int | None = Field(
        default=None,
        ge=2,
        description="Only for a turn longer than the model reads at once: the number of overlapping windows it was "
        "read in; the prediction is that of its riskiest window. Absent: the turn was read whole.",
    )

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler):
        # Absent, not null: a text, or a model without signals, answers in the shape it always had.
        data = handler(self)
        for key in ("signals", "escalation", "windows"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


class AlertEventBody(_Response):
    """An event for supervisors: an alert raised, an all clear, or a conversation ended, with its reason."""

    kind: Literal[EVENT_KINDS]  # type: ignore[valid-type]
    conversation_id: str
    reason: str = Field(
        description="abusive or escalation (alert), calmed_down (all_clear), deleted, expired or shutdown (ended)."
    )
    reasons: list[Reason] = Field(
        description="An alert's escalation reasons (rule names), most recent first; empty for other events."
    )
    since_turn: dict[Reason, int] = Field(description="For each reason, the index of the turn that set it off.")
    message: str | None = Field(description="What happened, in words, for a supervisor.")
    turn_index: int | None = Field(description="Index of the turn that caused the event (agent turns counted).")
    label: Emotion | None = Field(description="That turn's emotion label.")
    score: float | None = Field(description="That turn's escalation score.")
    threshold: float | None = Field(description="The threshold it crossed (raise for an alert, clear for all clear).")
    text: str | None = Field(description="That turn's text (null when alert_text is off).")
    lang: str | None
    queue: str | None
    team: str | None
    most_severe_label: Emotion | None
    alerts_raised: int = Field(description="Alerts raised in this conversation so far.")
    time: float = Field(description="Unix time of the event.")
    id: int = Field(description="Sequence number of the event (the SSE id, for Last-Event-ID).")


class TrackedTurnBody(_Response):
    """One of the latest turns of a live conversation, as kept for display."""

    index: int
    speaker: Speaker
    text: str | None = Field(description="The turn's text (null when alert_text is off).")
    prediction: PredictionBody | None = Field(description="The prediction of a customer turn; null for an agent's.")


class ConversationStateBody(_Response):
    """The dialogue-level outputs of one live conversation after its latest turn."""

    conversation_id: str
    lang: str | None
    queue: str | None
    team: str | None
    turns: int = Field(description="Turns so far, agent turns included.")
    customer_turns: int
    current_label: Emotion | None = Field(description="The latest customer turn's label.")
    most_severe_label: Emotion | None
    trend: Literal[TRENDS]  # type: ignore[valid-type]
    escalation_score: float | None = Field(description="The latest customer turn's escalation score.")
    escalate: bool
    first_escalation_turn: int | None
    alert_active: bool
    alerts_raised: int
    risk: float = Field(description="Risk of the latest customer turn in [0, 1] (0 before any).")
    last_alert: AlertEventBody | None
    recent_turns: list[TrackedTurnBody] = Field(description="The latest turns (keep_turns), oldest first.")
    started_at: float = Field(description="Server monotonic seconds of the first turn.")
    updated_at: float = Field(description="Server monotonic seconds of the latest turn.")
    escalation: EscalationBody | None = Field(
        description="The escalation policy's decision after the latest customer turn (null before any)."
    )


# -- /v1/classify -----------------------------------------------------------------------------------------------


class ClassifyRequest(BaseModel):
    """Either ``texts`` or ``conversations`` (the project's conversation format)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] | None = Field(default=None, description="Single texts, each classified without context.")
    conversations: list[dict[str, Any]] | None = Field(
        default=None, description="Conversations; every customer turn is classified with its preceding turns."
    )
    lang: Lang | None = Field(
        default=None,
        description="Language of the texts, and of the conversations that give none (for the per-language "
        "thresholds); without it each text's or conversation's is read from its script (Han: zh, Cyrillic: ru).",
    )


class ModelRef(_Response):
    """Which model answered."""

    name: str
    version: str


class TextPrediction(_Response):
    text: str = Field(description="The text as sent.")
    prediction: PredictionBody


class ClassifiedTexts(_Response):
    """The answer to ``texts``: each text with its prediction, in order."""

    model: ModelRef
    texts: list[TextPrediction]


class LabelledCustomerTurn(BaseModel):
    """A customer turn as sent, every other field kept, with the model's ``prediction`` added."""

    model_config = ConfigDict(extra="allow")

    speaker: Literal["customer"]
    text: str
    prediction: PredictionBody


class LabelledAgentTurn(BaseModel):
    """An agent turn, returned as sent."""

    model_config = ConfigDict(extra="allow")

    speaker: Literal["agent"]
    text: str


class LabelledConversation(BaseModel):
    """A conversation as sent (every field kept), each customer turn with its prediction."""

    model_config = ConfigDict(extra="allow")

    id: Any = Field(description="The conversation's id as sent (a string or an integer).")
    turns: list[Annotated[LabelledCustomerTurn | LabelledAgentTurn, Field(discriminator="speaker")]]


class ClassifiedConversations(_Response):
    """The answer to ``conversations``: the conversations in the shape ``tonewatch label`` writes."""

    model: ModelRef
    conversations: list[LabelledConversation]


# -- live conversations -----------------------------------------------------------------------------------------


class TurnRequest(BaseModel):
    """One turn appended to a live conversation."""

    model_config = ConfigDict(extra="forbid")

    speaker: Speaker
    text: str = Field(description="The turn's text (ASR segment or chat message).")
    lang: Lang | None = Field(
        default=None,
        description="Language (zh or ru); the conversation's first one is kept. Without any, a turn's language "
        "is read from its script and its context's (Han: zh, Cyrillic: ru).",
    )
    queue: str | None = Field(default=None, max_length=LABEL_LENGTH, description="Queue the conversation is in.")
    team: str | None = Field(default=None, max_length=LABEL_LENGTH, description="Team handling the conversation.")

    @field_validator("queue", "team")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and (
            not is_clean_json(value) or any(unicodedata.category(char) in UNPRINTABLE_CATEGORIES for char in value)
        ):
            raise ValueError("must be printable text: no control, format, surrogate or line separator characters")
        return value


class TurnResult(_Response):
    """What one turn produced."""

    conversation_id: str
    prediction: PredictionBody | None = Field(description="The customer turn's prediction; null for an agent turn.")
    state: ConversationStateBody
    alert: AlertEventBody | None = Field(description="The alert this turn raised, if it raised one.")
    event: AlertEventBody | None = Field(description="The event this turn caused (an alert or an all clear), if any.")


class ConversationStateResult(_Response):
    state: ConversationStateBody


class EndedConversation(_Response):
    ended: AlertEventBody = Field(description="The conversation's ``ended`` event (also published to the stream).")


class ConversationList(_Response):
    count: int = Field(description="Live conversations matching the filter (may be more than listed).")
    conversations: list[ConversationStateBody] = Field(description="The riskiest first, at most ``limit``.")


class AlertList(_Response):
    events: list[AlertEventBody] = Field(description="The latest events, oldest first.")


# -- model info, probes -----------------------------------------------------------------------------------------


class ModelInfo(_Response):
    name: str
    version: str
    base_model: str
    max_context_turns: int = Field(description="Preceding turns the model reads as context.")
    backend: str = Field(description="The runtime serving it: onnx or torch.")
    signals: list[str] = Field(
        description="The turn signals the model predicts (empty: none; the escalation policy then falls back to "
        "the learnt score)."
    )
    signal_reader: str | None = Field(description="What reads them: head or char_ngrams (null without signals).")


class EscalationThresholds(_Response):
    default: float = Field(description="The model's calibrated threshold for languages without their own.")
    per_language: dict[str, float]


class AlertThresholds(_Response):
    raise_: float = Field(alias="raise", description="An alert is raised at or above this escalation score.")
    clear: float = Field(description="A turn counts towards all clear below this score.")


class Thresholds(_Response):
    escalation: EscalationThresholds
    alert: dict[str, AlertThresholds] = Field(description='Per language, and "*" for any other.')


class AlertPolicyInfo(_Response):
    hysteresis: float
    clear_turns: int
    cooldown_turns: int
    cooldown_seconds: float
    immediate_labels: list[Emotion]
    immediate_reasons: list[str] = Field(
        description="Escalation reasons that raise an alert at once, whatever the cooldown."
    )
    update_reasons: list[str] = Field(
        description="Escalation reasons that alert again within an active alert (e.g. abuse after a warning)."
    )


class Limits(_Response):
    max_text_chars: int
    max_items: int
    max_conversation_turns: int
    max_body_bytes: int
    idle_timeout_s: float
    max_conversations: int
    max_conversations_per_key: int | None = Field(description="None: no limit per key (or a server without keys).")


class Info(_Response):
    """The model, its labels and thresholds, the alert policy and the request limits."""

    model: ModelInfo
    labels: list[Emotion] = Field(description="The emotion labels, least to most severe.")
    escalation_label: str
    languages: list[Lang]
    thresholds: Thresholds
    alert_policy: AlertPolicyInfo
    escalation_policy: dict[str, Any] = Field(
        description="The escalation policy: learnt_head, each rule's settings, agent-signal thresholds, persistence."
    )
    limits: Limits
    auth: bool = Field(description="Whether API keys are required.")
    state: Literal["memory", "redis"] = Field(
        description="Where live conversations are kept: this process's memory, or Redis (shared by processes, "
        "kept across restarts)."
    )
    tonewatch_version: str


class Health(_Response):
    status: Literal["ok"]


class Readiness(_Response):
    ready: Literal[True]
    model: str
    version: str
