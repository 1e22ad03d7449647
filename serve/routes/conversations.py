"""Live conversations: turns as they happen (write), their states riskiest first (read), their end (write)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tonewatch.serve.alerts import EventFilter
from tonewatch.serve.auth import require_scope
from tonewatch.serve.errors import ApiError
from tonewatch.serve.schemas import (
    AUTH_ERRORS,
    BODY_ERRORS,
    LABEL_LENGTH,
    ConversationId,
    ConversationList,
    ConversationStateResult,
    EndedConversation,
    TurnRequest,
    TurnResult,
    error_responses,
)
from tonewatch.serve.server import ServerDep
from tonewatch.serve.state import (
    CapacityError,
    ConversationBusyError,
    ConversationEndedError,
    StateUnavailableError,
)
from tonewatch.tracking.tracker import prediction_dict

router = APIRouter(tags=["conversations"])

READ = [Depends(require_scope("read"))]
WRITE = [Depends(require_scope("write"))]
STATE_ERRORS = (CapacityError, ConversationBusyError, ConversationEndedError, StateUnavailableError)


@router.post(
    "/v1/conversations/{conversation_id}/turns",
    response_model=TurnResult,
    responses=error_responses(
        *AUTH_ERRORS,
        *BODY_ERRORS,
        409,
        503,
        s503="The model is not loaded (yet), max_conversations live conversations are held (or "
        "max_conversations_per_key by this key), the state store (Redis) cannot be reached, or another server "
        "process holds the conversation; Retry-After says when to try again.",
    ),
)
async def add_turn(
    conversation_id: ConversationId,
    body: TurnRequest,
    server: ServerDep,
    key_name: Annotated[str | None, Depends(require_scope("write"))],
) -> dict:
    """Append a turn to a live conversation (made on its first turn); a customer turn is classified."""
    server.require_ready()
    text = server.check_text(body.text, "text")
    try:
        async with server.store.turn(conversation_id, key_name) as live:
            tracker = live.tracker
            prediction, signals = None, None
            if body.speaker == "customer":
                (prediction,) = await server.batcher.classify([tracker.turn_input(text, body.lang)])
            elif server.reads_agent_turns:
                (signals,) = await server.agent_signals([tracker.turn_input(text, body.lang)])
            if live.ended:  # ended (DELETE) while the model was busy: its state is gone
                raise ApiError(409, "conversation_ended", "the conversation ended while this turn was added")
            update = tracker.observe(
                body.speaker, text, prediction, lang=body.lang, queue=body.queue, team=body.team, signals=signals
            )
        # The events are published (numbered) now: by the tracker at once, or by a shared store on commit.
        event = live.event if update.event is not None else None
        state = tracker.state
    except STATE_ERRORS as error:
        raise server.state_error(error) from None
    if prediction is not None:
        server.count_turns([prediction], "turns")
    return {
        "conversation_id": conversation_id,
        "prediction": prediction_dict(prediction, state.escalation) if prediction is not None else None,
        "state": state.to_dict(include_text=server.config.alert_text),
        "alert": server.event_dict(event) if event is not None and event.kind == "alert" else None,
        "event": server.event_dict(event),
    }


@router.get(
    "/v1/conversations/{conversation_id}",
    response_model=ConversationStateResult,
    dependencies=READ,
    responses=error_responses(*AUTH_ERRORS, 404, 422, 503),
)
async def get_conversation(conversation_id: ConversationId, server: ServerDep) -> dict:
    """The state of a live conversation."""
    try:
        state = await server.store.fetch(conversation_id)
    except STATE_ERRORS as error:
        raise server.state_error(error) from None
    if state is None:
        raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
    return {"state": state.to_dict(include_text=server.config.alert_text)}


@router.delete(
    "/v1/conversations/{conversation_id}",
    response_model=EndedConversation,
    dependencies=WRITE,
    responses=error_responses(*AUTH_ERRORS, 404, 422, 503),
)
async def end_conversation(conversation_id: ConversationId, server: ServerDep) -> dict:
    """End a live conversation: its state is dropped and a ``conversation ended`` event is published."""
    try:
        event = await server.store.finish(conversation_id, "deleted")
    except STATE_ERRORS as error:
        raise server.state_error(error) from None
    if event is None:
        raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
    return {"ended": server.event_dict(event)}


@router.get(
    "/v1/conversations",
    response_model=ConversationList,
    dependencies=READ,
    responses=error_responses(*AUTH_ERRORS, 422, 503),
)
async def list_conversations(
    server: ServerDep,
    queue: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this queue's.")] = None,
    team: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this team's.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="List at most this many.")] = 100,
) -> dict:
    """Live conversations, riskiest first (active alert, then the latest turn's risk)."""
    try:
        count, states = await server.store.list_states(EventFilter(queue, team).matches, limit)
    except STATE_ERRORS as error:
        raise server.state_error(error) from None
    include_text = server.config.alert_text
    return {"count": count, "conversations": [state.to_dict(include_text=include_text) for state in states]}
