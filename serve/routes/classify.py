"""``/v1/classify``: predictions for texts or whole conversations, in the shapes ``tonewatch label`` writes."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from tonewatch.conversations import ConversationFormatError, validate_conversation
from tonewatch.model.types import TurnInput, conversation_turn_inputs
from tonewatch.serve.auth import require_scope
from tonewatch.serve.batching import BULK
from tonewatch.serve.errors import ApiError, is_clean_json
from tonewatch.serve.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    ClassifiedConversations,
    ClassifiedTexts,
    ClassifyRequest,
    error_responses,
)
from tonewatch.serve.server import Server, ServerDep
from tonewatch.tracking.policy import agent_turn_inputs, escalate_conversation, escalate_text
from tonewatch.tracking.tracker import prediction_dict

router = APIRouter(tags=["model"], dependencies=[Depends(require_scope("write"))])


@router.post(
    "/v1/classify",
    # Only the key of the list that was sent is in the answer (``texts`` or ``conversations``), and an agent turn
    # gets no ``prediction`` key: fields that were never set are left out.
    response_model=ClassifiedTexts | ClassifiedConversations,
    response_model_exclude_unset=True,
    responses=error_responses(*AUTH_ERRORS, *BODY_ERRORS, 503),
)
async def classify(body: ClassifyRequest, server: ServerDep) -> dict:
    """Predictions for texts or conversations, in the shapes ``tonewatch label`` writes.

    Bulk work: the model reads these turns only while no live turn waits, at most ``batch_max_size`` rows per
    model call, so a large request never holds up live conversations for longer than one such call."""
    config = server.config
    if (body.texts is None) == (body.conversations is None):
        raise ApiError(422, "invalid_request", "give either 'texts' or 'conversations'")
    records = body.texts if body.texts is not None else body.conversations
    if not records:
        raise ApiError(422, "empty_request", "nothing to classify: the list is empty")
    if len(records) > config.max_items:
        raise ApiError(422, "too_many_items", f"{len(records)} items; the limit is {config.max_items} per request")
    classifier = server.require_ready()
    model = {"name": classifier.config.name, "version": classifier.config.version}
    if body.texts is not None:
        # Without `lang`, each text's language is read from its script (TurnInput), for the model and the policy.
        texts = [server.check_text(text, f"texts[{index}]") for index, text in enumerate(body.texts)]
        inputs = [TurnInput(text, (), body.lang) for text in texts]
        predictions = await server.batcher.classify(inputs, BULK)
        server.count_turns(predictions, "classify")
        return {
            "model": model,
            "texts": [
                {
                    "text": text,
                    "prediction": prediction_dict(
                        prediction, escalate_text(server.config.escalation, prediction, item.lang)
                    ),
                }
                for text, item, prediction in zip(body.texts, inputs, predictions, strict=True)
            ],
        }
    # A conversation without its own `lang` takes the request's (else its script's): read, not echoed back.
    read_as = [
        {**conversation, "lang": body.lang} if body.lang and conversation.get("lang") is None else conversation
        for conversation in records
    ]
    inputs = [conversation_inputs(server, conversation, index) for index, conversation in enumerate(read_as)]
    predictions = await server.batcher.classify([item for items in inputs for item in items], BULK)
    server.count_turns(predictions, "classify")
    agent_signals = await conversation_agent_signals(server, read_as)
    labelled, position = [], 0
    for conversation, as_read, turn_inputs, signals in zip(records, read_as, inputs, agent_signals, strict=True):
        own = predictions[position : position + len(turn_inputs)]
        position += len(own)
        # The same policy as `tonewatch label` and the live tracker: each customer turn read in its conversation.
        escalations = iter(escalate_conversation(server.config.escalation, as_read, own, signals))
        customer = iter(own)
        turns = [dict(turn) for turn in conversation["turns"]]
        for turn in turns:
            if turn["speaker"] == "customer":
                turn["prediction"] = prediction_dict(next(customer), next(escalations))
        labelled.append({**conversation, "turns": turns})
    return {"model": model, "conversations": labelled}


async def conversation_agent_signals(server: Server, conversations: list[dict]) -> list[dict[int, dict] | None]:
    """Per conversation, its agent turns' signals by turn index (``None`` when the model predicts none)."""
    if not server.reads_agent_turns:
        return [None] * len(conversations)
    indexed = [agent_turn_inputs(conversation) for conversation in conversations]
    flat = [item for items in indexed for _, item in items]
    signals = iter(await server.agent_signals(flat) if flat else [])
    return [{index: next(signals) for index, _ in items} for items in indexed]


def conversation_inputs(server: Server, conversation: dict, index: int) -> list[TurnInput]:
    """The model inputs of ``conversation``'s customer turns, or a typed 422 when it is not a valid conversation."""
    where = f"conversations[{index}]"
    if not is_clean_json(conversation):
        raise ApiError(422, "invalid_text", f"{where}: holds unpaired surrogates, NaN or Infinity, or nests too deep")
    try:
        validate_conversation(conversation)
    except ConversationFormatError as error:
        raise ApiError(422, "invalid_conversation", f"{where}: {error}") from None
    turns = conversation["turns"]
    if len(turns) > server.config.max_conversation_turns:
        raise ApiError(
            422,
            "too_many_items",
            f"{where}: {len(turns)} turns; the limit is {server.config.max_conversation_turns} per conversation",
        )
    for position, turn in enumerate(turns):
        server.check_text(turn["text"], f"{where}.turns[{position}]")
    return conversation_turn_inputs(conversation)
