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
from tonewatch.serve.state import CapacityError
from tonewatch.tracking.tracker import prediction_dict

router = APIRouter(tags=["conversations"])

READ = [Depends(require_scope("read"))]
WRITE = [Depends(require_scope("write"))]


@router.post(
    "/v1/conversations/{conversation_id}/turns",
    response_model=TurnResult,
    dependencies=WRITE,
    responses=error_responses(
        *AUTH_ERRORS,
        *BODY_ERRORS,
        409,
        503,
        s503="The model is not loaded (yet), or max_conversations live conversations are held; Retry-After says "
        "when to try again.",
    ),
)
async def add_turn(conversation_id: ConversationId, body: TurnRequest, server: ServerDep) -> dict:
    """Append a turn to a live conversation (made on its first turn); a customer turn is classified."""
    server.require_ready()
    text = server.check_text(body.text, "text")
    for _ in range(3):  # the conversation may end (DELETE, expiry) while this turn waits for its lock
        try:
            live, _created = server.store.get_or_create(conversation_id)
        except CapacityError as error:
            raise ApiError(503, "capacity_exceeded", str(error), headers={"Retry-After": "5"}) from None
        async with live.lock:
            if live.ended:
                continue
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
            event = update.event  # published by the tracker
            break
    else:
        raise ApiError(409, "conversation_ended", "the conversation ended while this turn was being added")
    if prediction is not None:
        server.count_turns([prediction], "turns")
    return {
        "conversation_id": conversation_id,
        "prediction": prediction_dict(prediction, update.escalation) if prediction is not None else None,
        "state": update.state.to_dict(include_text=server.config.alert_text),
        "alert": server.event_dict(event) if event is not None and event.kind == "alert" else None,
        "event": server.event_dict(event),
    }


@router.get(
    "/v1/conversations/{conversation_id}",
    response_model=ConversationStateResult,
    dependencies=READ,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
)
async def get_conversation(conversation_id: ConversationId, server: ServerDep) -> dict:
    """The state of a live conversation."""
    live = server.store.get(conversation_id)
    if live is None:
        raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
    return {"state": live.tracker.state.to_dict(include_text=server.config.alert_text)}


@router.delete(
    "/v1/conversations/{conversation_id}",
    response_model=EndedConversation,
    dependencies=WRITE,
    responses=error_responses(*AUTH_ERRORS, 404, 422),
)
async def end_conversation(conversation_id: ConversationId, server: ServerDep) -> dict:
    """End a live conversation: its state is dropped and a ``conversation ended`` event is published."""
    event = server.store.end(conversation_id, "deleted")
    if event is None:
        raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
    return {"ended": server.event_dict(event)}


@router.get(
    "/v1/conversations",
    response_model=ConversationList,
    dependencies=READ,
    responses=error_responses(*AUTH_ERRORS, 422),
)
async def list_conversations(
    server: ServerDep,
    queue: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this queue's.")] = None,
    team: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this team's.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="List at most this many.")] = 100,
) -> dict:
    """Live conversations, riskiest first (active alert, then the latest turn's risk)."""
    count, states = server.store.states(EventFilter(queue, team).matches, limit)
    include_text = server.config.alert_text
    return {"count": count, "conversations": [state.to_dict(include_text=include_text) for state in states]}
