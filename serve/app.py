"""The HTTP server: classification, live conversations, supervisor alerts (SSE), dashboard, metrics.

``create_app(config)`` builds everything (nothing happens at import time);
``run_server(config)`` loads the model and serves it with uvicorn. See
``tonewatch.serve.config.ServeConfig`` for every setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, Query, Request, Response
from fastapi import Path as PathParameter
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tonewatch.data.conversations import ConversationFormatError, validate_conversation
from tonewatch.labels import EMOTION_LABELS, ESCALATION_LABEL, LANGUAGES
from tonewatch.model.classifier import TurnInput, conversation_turn_inputs
from tonewatch.model.tracker import AlertEvent, ConversationTracker
from tonewatch.serve.alerts import AlertHub, EventFilter
from tonewatch.serve.auth import Authenticator
from tonewatch.serve.batching import BatcherClosedError, MicroBatcher
from tonewatch.serve.config import ServeConfig
from tonewatch.serve.errors import (
    ApiError,
    BodyLimitMiddleware,
    SafeJSONResponse,
    install_error_handlers,
    is_clean_json,
)
from tonewatch.serve.metrics import Metrics, RequestMetricsMiddleware
from tonewatch.serve.state import CapacityError, ConversationStore

logger = logging.getLogger("tonewatch.serve")
access_logger = logging.getLogger("tonewatch.serve.access")

STATIC_DIR = Path(__file__).resolve().parent / "static"
CONVERSATION_ID_PATTERN = r"^[^\x00-\x1f\x7f/]+$"
LABEL_LENGTH = 100

Lang = Literal["zh", "ru"]
ConversationId = Annotated[
    str,
    PathParameter(
        min_length=1,
        max_length=128,
        pattern=CONVERSATION_ID_PATTERN,
        description="The caller's id of the conversation (1-128 characters, no control characters or '/').",
    ),
]


class ClassifyRequest(BaseModel):
    """Either ``texts`` or ``conversations`` (the project's conversation format)."""

    model_config = ConfigDict(extra="forbid")

    texts: list[str] | None = Field(default=None, description="Single texts, each classified without context.")
    conversations: list[dict[str, Any]] | None = Field(
        default=None, description="Conversations; every customer turn is classified with its preceding turns."
    )
    lang: Lang | None = Field(default=None, description="Language of the texts (for the per-language threshold).")


class TurnRequest(BaseModel):
    """One turn appended to a live conversation."""

    model_config = ConfigDict(extra="forbid")

    speaker: Literal["customer", "agent"]
    text: str = Field(description="The turn's text (ASR segment or chat message).")
    lang: Lang | None = Field(default=None, description="Language (zh or ru); the conversation's first one is kept.")
    queue: str | None = Field(default=None, max_length=LABEL_LENGTH, description="Queue the conversation is in.")
    team: str | None = Field(default=None, max_length=LABEL_LENGTH, description="Team handling the conversation.")

    @field_validator("queue", "team")
    @classmethod
    def _valid_unicode(cls, value: str | None) -> str | None:
        if value is not None and not is_clean_json(value):
            raise ValueError("must be valid Unicode text")
        return value


class Server:
    """Everything one app holds: the model, the batcher, live conversations, alerts, metrics, keys."""

    def __init__(self, config: ServeConfig, classifier=None, clock=time.monotonic):
        self.config = config
        self.classifier = classifier
        self.load_error: str | None = None
        self.metrics = Metrics()
        self.auth = Authenticator(config.api_keys)
        self.hub = AlertHub(config.sse_queue_size, config.recent_events, on_publish=self._on_event)
        self.batcher = self.new_batcher()
        self.store = ConversationStore(
            self._new_tracker,
            idle_timeout_s=config.idle_timeout_s,
            sweep_interval_s=config.sweep_interval_s,
            max_conversations=config.max_conversations,
            clock=clock,
        )
        self.clock = clock
        self.policy = None
        if classifier is not None:
            self._set_classifier(classifier)
        self.metrics.live_conversations.set_function(lambda: len(self.store))

    # -- model ------------------------------------------------------------------------------------------------
    def new_batcher(self) -> MicroBatcher:
        return MicroBatcher(
            self._classify,
            max_batch_size=self.config.batch_max_size,
            max_wait_s=self.config.batch_max_wait_ms / 1000,
            on_batch=self.metrics.observe_batch,
        )

    def _set_classifier(self, classifier) -> None:
        self.policy = self.config.alert.with_calibration(classifier.config.calibration)
        self.classifier = classifier

    def load_model(self) -> None:
        """Load ``config.model_dir`` (in a worker thread at startup when no classifier was given)."""
        from tonewatch.model.classifier import Classifier

        try:
            started = time.perf_counter()
            classifier = Classifier.from_pretrained(
                self.config.model_dir, backend=self.config.backend, threads=self.config.torch_threads or None
            )
        except Exception as error:
            self.load_error = f"{type(error).__name__}: {error}"
            logger.error("could not load the model: %s", self.load_error)
            return
        self._set_classifier(classifier)
        logger.info("model %s loaded in %.1f s", classifier.config.name, time.perf_counter() - started)

    def _classify(self, items):
        # Only a single large /v1/classify request exceeds batch_max_size; it is run in chunks of that size.
        return self.classifier.classify(items, batch_size=self.config.batch_max_size)

    def require_ready(self):
        if self.classifier is None:
            message = f"the model failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ApiError(503, "not_ready", message, headers={"Retry-After": "5"})
        return self.classifier

    def _new_tracker(self, conversation_id: str) -> ConversationTracker:
        classifier = self.require_ready()
        return ConversationTracker(
            conversation_id,
            policy=self.policy,
            max_context_turns=classifier.config.limits.max_context_turns,
            keep_turns=self.config.keep_turns,
            clock=self.clock,
            on_event=self.hub.publish,
        )

    # -- input checks -----------------------------------------------------------------------------------------
    def check_text(self, text: str, where: str) -> str:
        """``text`` stripped, or a typed 422 when it is empty, too long, or not encodable as UTF-8."""
        if len(text) > self.config.max_text_chars:
            raise ApiError(
                422,
                "text_too_long",
                f"{where}: text is {len(text)} characters; the limit is {self.config.max_text_chars}",
            )
        stripped = text.strip()
        if not stripped:
            raise ApiError(422, "empty_text", f"{where}: text is empty")
        try:
            stripped.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, "invalid_text", f"{where}: text holds unpaired surrogate code points") from None
        return stripped

    # -- events -----------------------------------------------------------------------------------------------
    def _on_event(self, event: AlertEvent) -> None:
        self.metrics.observe_event(event)
        if event.kind == "ended" and not event.alerts_raised:
            logger.debug("conversation %s ended (%s)", event.conversation_id, event.reason)
            return
        details = event.to_dict(include_text=self.config.log_transcripts)
        text = f" text={details['text']!r}" if self.config.log_transcripts else ""
        log = logger.warning if event.kind == "alert" else logger.info
        log(
            "%s conversation=%s reason=%s label=%s score=%s turn=%s queue=%s team=%s%s",
            event.kind,
            event.conversation_id,
            event.reason,
            event.label,
            details["score"],
            event.turn_index,
            event.queue,
            event.team,
            text,
        )

    def event_dict(self, event: AlertEvent | None) -> dict | None:
        return None if event is None else event.to_dict(include_text=self.config.alert_text)


def create_app(config: ServeConfig, classifier=None, *, clock=time.monotonic) -> FastAPI:
    """The server app for ``config``. ``classifier`` (tests, ``run_server``) skips loading ``config.model_dir``;
    without it the model loads in a worker thread at startup and ``/readyz`` says when it is ready.
    ``clock`` (monotonic seconds) times idle expiry and cooldowns."""
    server = Server(config, classifier, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if server.batcher.closed:  # the app is started again after a shutdown
            server.batcher = server.new_batcher()
        if server.classifier is None and server.load_error is None:
            loader = threading.Thread(target=server.load_model, name="tonewatch-model-loader", daemon=True)
            loader.start()
        sweeper = asyncio.create_task(_sweep_forever(server))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await asyncio.to_thread(server.batcher.close)

    app = FastAPI(
        title="tonewatch",
        summary="Customer emotion and escalation for live Chinese and Russian contact-centre conversations.",
        version=_version(),
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
    )
    app.state.server = server
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=server.metrics)
    app.add_middleware(_AccessLogMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- dashboard, probes, metrics ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: {"description": "The model is not loaded (yet)."}})
    async def readyz() -> dict:
        """The model is loaded and requests can be classified."""
        classifier = server.require_ready()
        return {"ready": True, "model": classifier.config.name, "version": classifier.config.version}

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics (text format)."""
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    # -- model ------------------------------------------------------------------------------------------------
    @app.get("/v1/info", tags=["model"])
    async def info(request: Request) -> dict:
        """Model name and version, labels, the model's calibrated thresholds and the alert policy's."""
        server.auth.require(request, "read", "write")
        classifier = server.require_ready()
        calibration = classifier.config.calibration
        return {
            "model": {
                "name": classifier.config.name,
                "version": classifier.config.version,
                "base_model": classifier.config.base_model,
                "max_context_turns": classifier.config.limits.max_context_turns,
                "backend": classifier.backend_name,
            },
            "labels": list(EMOTION_LABELS),
            "escalation_label": ESCALATION_LABEL,
            "languages": list(LANGUAGES),
            "thresholds": {
                "escalation": {
                    "default": calibration.escalation_threshold,
                    "per_language": dict(calibration.escalation_thresholds),
                },
                "alert": server.policy.thresholds(),
            },
            "alert_policy": {
                "hysteresis": server.policy.hysteresis,
                "clear_turns": server.policy.clear_turns,
                "cooldown_turns": server.policy.cooldown_turns,
                "cooldown_seconds": server.policy.cooldown_seconds,
                "immediate_labels": list(server.policy.immediate_labels),
            },
            "limits": {
                "max_text_chars": config.max_text_chars,
                "max_items": config.max_items,
                "max_conversation_turns": config.max_conversation_turns,
                "max_body_bytes": config.max_body_bytes,
                "idle_timeout_s": config.idle_timeout_s,
            },
            "auth": server.auth.enabled,
            "tonewatch_version": _version(),
        }

    @app.post("/v1/classify", tags=["model"])
    async def classify(body: ClassifyRequest, request: Request) -> dict:
        """Predictions for texts or conversations, in the shapes ``tonewatch label`` writes."""
        server.auth.require(request, "write")
        if (body.texts is None) == (body.conversations is None):
            raise ApiError(422, "invalid_request", "give either 'texts' or 'conversations'")
        records = body.texts if body.texts is not None else body.conversations
        if not records:
            raise ApiError(422, "empty_request", "nothing to classify: the list is empty")
        if len(records) > config.max_items:
            raise ApiError(422, "too_many_items", f"{len(records)} items; the limit is {config.max_items} per request")
        classifier = server.require_ready()
        if body.texts is not None:
            texts = [server.check_text(text, f"texts[{index}]") for index, text in enumerate(body.texts)]
            predictions = await server.batcher.classify([TurnInput(text, (), body.lang) for text in texts])
            _count(server, predictions, "classify")
            return {
                "model": {"name": classifier.config.name, "version": classifier.config.version},
                "texts": [
                    {"text": text, "prediction": prediction.to_dict()}
                    for text, prediction in zip(body.texts, predictions, strict=True)
                ],
            }
        inputs = [_conversation_inputs(server, conversation, index) for index, conversation in enumerate(records)]
        predictions = await server.batcher.classify([item for items in inputs for item in items])
        _count(server, predictions, "classify")
        labelled, position = [], 0
        for conversation in records:
            turns = [dict(turn) for turn in conversation["turns"]]
            for turn in turns:
                if turn["speaker"] == "customer":
                    turn["prediction"] = predictions[position].to_dict()
                    position += 1
            labelled.append({**conversation, "turns": turns})
        return {
            "model": {"name": classifier.config.name, "version": classifier.config.version},
            "conversations": labelled,
        }

    # -- live conversations -----------------------------------------------------------------------------------
    @app.post(
        "/v1/conversations/{conversation_id}/turns",
        tags=["conversations"],
        responses={503: {"description": "The model is not loaded, or too many live conversations."}},
    )
    async def add_turn(conversation_id: ConversationId, body: TurnRequest, request: Request) -> dict:
        """Append a turn to a live conversation (made on its first turn); a customer turn is classified."""
        server.auth.require(request, "write")
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
                prediction = None
                if body.speaker == "customer":
                    (prediction,) = await server.batcher.classify([tracker.turn_input(text, body.lang)])
                    if live.ended:  # ended (DELETE) while the model was busy: its state is gone
                        raise ApiError(409, "conversation_ended", "the conversation ended while this turn was added")
                elif server.classifier.config.architecture == "turns":
                    # Encode the agent turn now, in the shared batch, without waiting: its cached vector is the
                    # context of the next customer turn, whose call then encodes only that turn.
                    with contextlib.suppress(BatcherClosedError):  # shutting down: nothing to prepare for
                        server.batcher.submit([TurnInput(text, (), body.lang)])
                update = tracker.observe(
                    body.speaker, text, prediction, lang=body.lang, queue=body.queue, team=body.team
                )
                event = update.event  # published by the tracker
                break
        else:
            raise ApiError(409, "conversation_ended", "the conversation ended while this turn was being added")
        if prediction is not None:
            server.metrics.turns.labels(prediction.emotion, "turns").inc()
        return {
            "conversation_id": conversation_id,
            "prediction": prediction.to_dict() if prediction is not None else None,
            "state": update.state.to_dict(include_text=config.alert_text),
            "alert": server.event_dict(event) if event is not None and event.kind == "alert" else None,
            "event": server.event_dict(event),
        }

    @app.get("/v1/conversations/{conversation_id}", tags=["conversations"])
    async def get_conversation(conversation_id: ConversationId, request: Request) -> dict:
        """The state of a live conversation."""
        server.auth.require(request, "read")
        live = server.store.get(conversation_id)
        if live is None:
            raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
        return {"state": live.tracker.state.to_dict(include_text=config.alert_text)}

    @app.delete("/v1/conversations/{conversation_id}", tags=["conversations"])
    async def end_conversation(conversation_id: ConversationId, request: Request) -> dict:
        """End a live conversation: its state is dropped and a ``conversation ended`` event is published."""
        server.auth.require(request, "write")
        event = server.store.end(conversation_id, "deleted")
        if event is None:
            raise ApiError(404, "unknown_conversation", f"no live conversation {conversation_id!r}")
        return {"ended": server.event_dict(event)}

    @app.get("/v1/conversations", tags=["conversations"])
    async def list_conversations(
        request: Request,
        queue: Annotated[str | None, Query(max_length=LABEL_LENGTH)] = None,
        team: Annotated[str | None, Query(max_length=LABEL_LENGTH)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict:
        """Live conversations, riskiest first (active alert, then the latest turn's risk)."""
        server.auth.require(request, "read")
        count, states = server.store.states(EventFilter(queue, team).matches, limit)
        return {"count": count, "conversations": [state.to_dict(include_text=config.alert_text) for state in states]}

    # -- alerts -----------------------------------------------------------------------------------------------
    @app.get("/v1/alerts", tags=["alerts"])
    async def recent_alerts(
        request: Request,
        queue: Annotated[str | None, Query(max_length=LABEL_LENGTH)] = None,
        team: Annotated[str | None, Query(max_length=LABEL_LENGTH)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict:
        """The latest events (alert, all clear, conversation ended), oldest first."""
        server.auth.require(request, "read")
        events = server.hub.recent(EventFilter(queue, team), limit=limit)
        return {"events": [server.event_dict(event) for event in events]}

    @app.get(
        "/v1/alerts/stream",
        tags=["alerts"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events."}},
    )
    async def alert_stream(
        request: Request,
        queue: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this queue's events.")] = None,
        team: Annotated[str | None, Query(max_length=LABEL_LENGTH, description="Only this team's events.")] = None,
        max_events: Annotated[int | None, Query(ge=1, le=100_000, description="Close after this many events.")] = None,
        timeout: Annotated[float | None, Query(gt=0, le=86_400, description="Close after this many seconds.")] = None,
        last_event_id: Annotated[int | None, Header(ge=0, le=2**53)] = None,
    ) -> StreamingResponse:
        """Server-Sent Events for supervisors: ``alert``, ``all_clear`` and ``ended``, each a JSON event.

        A client that reconnects with ``Last-Event-ID`` first gets the kept events it missed.
        """
        server.auth.require(request, "read")
        return StreamingResponse(
            _event_stream(server, EventFilter(queue, team), last_event_id, max_events, timeout),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return app


def _count(server: Server, predictions, endpoint: str) -> None:
    for prediction in predictions:
        server.metrics.turns.labels(prediction.emotion, endpoint).inc()


def _conversation_inputs(server: Server, conversation: dict, index: int) -> list[TurnInput]:
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


def _sse(event: AlertEvent, payload: dict) -> str:
    return f"id: {event.id}\nevent: {event.kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _event_stream(
    server: Server, event_filter: EventFilter, last_event_id: int | None, max_events: int | None, timeout: float | None
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    duration = min(timeout, server.config.sse_max_duration_s) if timeout else server.config.sse_max_duration_s
    deadline = loop.time() + duration
    subscription = server.hub.subscribe(event_filter, after_id=last_event_id)
    server.metrics.stream_clients.inc()
    sent = 0
    try:
        yield "retry: 3000\n: connected\n\n"
        while max_events is None or sent < max_events:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            wait = min(server.config.sse_keepalive_s, remaining)
            event = await subscription.next(wait)
            dropped = subscription.take_dropped()
            if dropped:
                yield f": {dropped} older events were dropped: this client reads too slowly\n\n"
            if event is None:
                yield ": keep-alive\n\n"
                continue
            yield _sse(event, server.event_dict(event))
            sent += 1
    finally:
        subscription.close()
        server.metrics.stream_clients.dec()


async def _sweep_forever(server: Server) -> None:
    """End idle conversations even when no request comes in (requests also sweep, lazily)."""
    while True:
        await asyncio.sleep(server.config.sweep_interval_s)
        try:
            server.store.maybe_sweep()
        except Exception:  # never let the sweeper die silently
            logger.exception("sweeping idle conversations failed")


class _AccessLogMiddleware:
    """One line per request: method, path without the query string (it may carry a key), status, duration."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def logging_send(message) -> None:
            if message["type"] == "http.response.start":
                access_logger.info(
                    "%s %s %d %.1f ms",
                    scope.get("method"),
                    scope.get("path"),
                    message["status"],
                    (time.perf_counter() - started) * 1000,
                )
            await send(message)

        await self.app(scope, receive, logging_send)


def _version() -> str:
    from tonewatch import __version__

    return __version__


def run_server(config: ServeConfig, classifier=None) -> None:
    """Load the model (or use ``classifier``) and serve ``config`` with uvicorn until interrupted.

    Without API keys the server listens on 127.0.0.1 only and says so. Raises
    :class:`~tonewatch.model.ModelDirectoryError` before listening when the model directory is not a model.
    """
    import uvicorn

    _configure_logging(config.log_level)
    host, notice = config.bind_host()
    if notice:
        logger.warning(notice)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    if classifier is None:
        from tonewatch.model.classifier import Classifier

        logger.info("loading model %s", config.model_dir or "(the shipped default)")
        classifier = Classifier.from_pretrained(
            config.model_dir, backend=config.backend, threads=config.torch_threads or None
        )
    if config.log_transcripts:
        logger.warning("log_transcripts is on: turn texts are written to the logs (debug only)")
    app = create_app(config, classifier)
    logger.info("serving %s on http://%s:%d (dashboard at /)", classifier.config.name, host, config.port)
    uvicorn.run(
        app,
        host=host,
        port=config.port,
        access_log=False,  # uvicorn's access log shows query strings, which may hold a key (?key=)
        log_level=config.log_level,
        timeout_graceful_shutdown=5,  # alert streams never end by themselves
    )


def _configure_logging(level: str) -> None:
    package_logger = logging.getLogger("tonewatch")
    package_logger.setLevel(level.upper())
    if not package_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package_logger.addHandler(handler)
