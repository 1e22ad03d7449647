"""Supervisor events (read scope): the latest ones, and the live Server-Sent Events stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from tonewatch.serve.alerts import EventFilter
from tonewatch.serve.auth import require_scope
from tonewatch.serve.schemas import AUTH_ERRORS, LABEL_LENGTH, AlertList, error_responses
from tonewatch.serve.server import Server, ServerDep
from tonewatch.tracking import EVENT_KINDS, AlertEvent

router = APIRouter(tags=["alerts"], dependencies=[Depends(require_scope("read"))])

SSE_RESPONSE = {
    "description": "Server-Sent Events: one per alert, all clear or conversation end (`id` its sequence number, "
    "`event` its kind, `data` the event as JSON), between `retry` and keep-alive comments.",
    "content": {
        "text/event-stream": {
            # Each event, as FastAPI documents its own SSE responses (OpenAPI 3.2's itemSchema).
            "itemSchema": {
                "type": "object",
                "required": ["data", "event", "id"],
                "properties": {
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/AlertEventBody"},
                    },
                    "event": {"type": "string", "enum": list(EVENT_KINDS)},
                    "id": {"type": "string", "pattern": "^[0-9]+$"},
                    "retry": {"type": "integer", "minimum": 0},
                },
            }
        }
    },
}


@router.get("/v1/alerts", response_model=AlertList, responses=error_responses(*AUTH_ERRORS, 422))
async def recent_alerts(
    server: ServerDep,
    queue: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this queue's events.")] = None,
    team: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this team's events.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="At most this many (the latest).")] = 50,
) -> dict:
    """The latest events (alert, all clear, conversation ended), oldest first."""
    events = server.hub.recent(EventFilter(queue, team), limit=limit)
    return {"events": [server.event_dict(event) for event in events]}


@router.get(
    "/v1/alerts/stream",
    response_class=StreamingResponse,
    responses={
        200: SSE_RESPONSE,
        **error_responses(*AUTH_ERRORS, 422),
    },
)
async def alert_stream(
    server: ServerDep,
    queue: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this queue's events.")] = None,
    team: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this team's events.")] = None,
    max_events: Annotated[int | None, Query(ge=1, le=100_000, description="Close after this many events.")] = None,
    timeout: Annotated[float | None, Query(gt=0, le=86_400, description="Close after this many seconds.")] = None,
    last_event_id: Annotated[int | None, Header(ge=0, le=2**53)] = None,
) -> StreamingResponse:
    """Server-Sent Events for supervisors: ``alert``, ``all_clear`` and ``ended``, each a JSON event.

    A client that reconnects with ``Last-Event-ID`` first gets the kept events it missed.
    """
    return StreamingResponse(
        event_stream(server, EventFilter(queue, team), last_event_id, max_events, timeout),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: AlertEvent, payload: dict) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def event_stream(
    server: Server, event_filter: EventFilter, last_event_id: int | None, max_events: int | None, timeout: float | None
) -> AsyncIterator[str]:
    """The stream's text: events as they are published, keep-alive comments, closed after the duration limit."""
    # The server's clock (time.monotonic unless a test injects one) times the stream's duration.
    duration = min(timeout, server.config.sse_max_duration_s) if timeout else server.config.sse_max_duration_s
    deadline = server.clock() + duration
    subscription = server.hub.subscribe(event_filter, after_id=last_event_id)
    server.metrics.stream_clients.inc()
    sent = 0
    try:
        yield "retry: 3000\n: connected\n\n"
        while max_events is None or sent < max_events:
            remaining = deadline - server.clock()
            if remaining <= 0:
                break
            wait = min(server.config.sse_keepalive_s, remaining)
            event = await subscription.next(wait)
            dropped = subscription.take_dropped()
            if dropped:
                yield f": {dropped} older events were dropped: this client reads too slowly\n\n"
            if event is None and subscription.finished:
                yield ": the server is stopping; reconnect with Last-Event-ID\n\n"
                break
            if event is None:
                yield ": keep-alive\n\n"
                continue
            yield _sse(event, server.event_dict(event))
            sent += 1
    finally:
        subscription.close()
        server.metrics.stream_clients.dec()
