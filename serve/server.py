"""What one app holds: the model, the batcher, live conversations, alerts, metrics, keys.

:func:`get_server` is the FastAPI dependency that hands it to the routes (``ServerDep``).
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from typing import Annotated

from fastapi import Depends, Request

from tonewatch.serve.alerts import AlertHub
from tonewatch.serve.auth import Authenticator
from tonewatch.serve.batching import MicroBatcher
from tonewatch.serve.config import ServeConfig
from tonewatch.serve.errors import ApiError
from tonewatch.serve.guards import log_safe
from tonewatch.serve.metrics import Metrics
from tonewatch.serve.state import (
    CapacityError,
    ConversationBusyError,
    ConversationEndedError,
    ConversationStore,
    StateUnavailableError,
)
from tonewatch.tracking import AlertEvent, ConversationTracker
from tonewatch.tracking.policy import wants_agent_signals

logger = logging.getLogger("tonewatch.serve")


class Server:
    """Everything one app holds: the model, the batcher, live conversations, alerts, metrics, keys."""

    def __init__(self, config: ServeConfig, classifier=None, clock=time.monotonic, wall_clock=time.time):
        """``clock`` (monotonic seconds) times streams, and idle expiry and cooldowns of conversations kept in
        memory; conversations kept in Redis are shared by processes on other machines and use ``wall_clock``."""
        self.config = config
        self.classifier = classifier
        self.load_error: str | None = None
        self.metrics = Metrics()
        self.auth = Authenticator(config.api_keys)
        self.batcher = self.new_batcher()
        self.clock = clock
        self.wall_clock = wall_clock
        max_per_key = (config.max_conversations_per_key or None) if config.api_keys else None
        if config.redis_url is not None:
            from tonewatch.serve.redis_state import RedisConversationStore

            self.hub = AlertHub(config.sse_queue_size, config.recent_events)
            self.tracker_clock = wall_clock
            self.store = RedisConversationStore(
                config.redis_url,
                new_tracker=self._new_tracker,
                restore_tracker=self._restore_tracker,
                hub=self.hub,
                on_publish=self._on_event,
                idle_timeout_s=config.idle_timeout_s,
                sweep_interval_s=config.sweep_interval_s,
                max_conversations=config.max_conversations,
                max_per_owner=max_per_key,
                prefix=config.state_prefix,
                stream_length=config.state_stream_length,
                clock=wall_clock,
            )
        else:
            # Ids from the start time in microseconds: they keep growing across restarts (below 2**53 until 2255).
            first_id = int(wall_clock() * 1_000_000)
            self.hub = AlertHub(config.sse_queue_size, config.recent_events, self._on_event, first_id)
            self.tracker_clock = clock
            self.store = ConversationStore(
                self._new_tracker,
                idle_timeout_s=config.idle_timeout_s,
                sweep_interval_s=config.sweep_interval_s,
                max_conversations=config.max_conversations,
                max_per_owner=max_per_key,
                publish=self.hub.publish,
                clock=clock,
            )
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
            cost=self._turn_cost,
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
        # A call holds at most batch_max_size model rows, unless one live request or one long turn is larger.
        return self.classifier.classify(items, batch_size=self.config.batch_max_size)

    def _turn_cost(self, item) -> int:
        """What a turn counts toward ``batch_max_size``: its model rows (a long turn is read in windows)."""
        return self.classifier.window_count(item)

    @property
    def reads_agent_turns(self) -> bool:
        """Whether agent turns go through the model: it predicts agent signals and a policy rule reads them."""
        return wants_agent_signals(self.classifier) and self.config.escalation.agent_signals_needed()

    async def agent_signals(self, items) -> list[dict[str, float]]:
        """The agent-turn signals of ``items`` (turns with their context), computed off the event loop."""
        # Agent turns are few and only a model with a signal head reads them; they are not micro-batched.
        return await asyncio.to_thread(self.classifier.agent_signals, items, self.config.batch_max_size)

    def require_ready(self):
        """The classifier, or a typed 503 while it is loading (or failed to load)."""
        if self.classifier is None:
            message = f"the model failed to load: {self.load_error}" if self.load_error else "the model is loading"
            raise ApiError(503, "not_ready", message, headers={"Retry-After": "5"})
        return self.classifier

    def _tracker_options(self, on_event) -> dict:
        classifier = self.require_ready()
        return {
            "policy": self.policy,
            "escalation": self.config.escalation,
            "max_context_turns": classifier.config.limits.max_context_turns,
            "keep_turns": self.config.keep_turns,
            "clock": self.tracker_clock,
            "wall_clock": self.wall_clock,
            "on_event": on_event,
        }

    def _new_tracker(self, conversation_id: str, on_event) -> ConversationTracker:
        return ConversationTracker(conversation_id, **self._tracker_options(on_event))

    def _restore_tracker(self, snapshot: dict, on_event) -> ConversationTracker:
        return ConversationTracker.restore(snapshot, **self._tracker_options(on_event))

    @staticmethod
    def state_error(error: Exception) -> ApiError:
        """The typed API error of a state store's error."""
        if isinstance(error, CapacityError):
            return ApiError(503, "capacity_exceeded", str(error), headers={"Retry-After": str(error.retry_after_s)})
        if isinstance(error, ConversationEndedError):
            return ApiError(409, "conversation_ended", str(error))
        if isinstance(error, ConversationBusyError):
            return ApiError(503, "conversation_busy", str(error), headers={"Retry-After": "1"})
        if isinstance(error, StateUnavailableError):
            return ApiError(503, "state_unavailable", str(error), headers={"Retry-After": "1"})
        raise TypeError(f"not a state store error: {error!r}")

    def begin_shutdown(self) -> None:
        """The server is stopping: conversations kept only in memory end (an ``ended`` event, reason
        ``shutdown``, so that supervisors know they are gone), then every alert stream ends after sending what
        it has. Conversations in Redis live on; stream clients reconnect to another or the restarted process."""
        if not self.store.shared:
            for conversation_id in self.store.ids():
                self.store.end(conversation_id, "shutdown")
        self.hub.finish_streams()

    # -- input checks -----------------------------------------------------------------------------------------
    def check_text(self, text: str, where: str) -> str:
        """``text`` stripped, or a typed 422 when it is too long, empty (nothing but spaces and invisible
        characters: zero-width spaces and joiners, BOM, NUL and other control or format characters), holds a NUL,
        or is not encodable as UTF-8."""
        if len(text) > self.config.max_text_chars:
            raise ApiError(
                422,
                "text_too_long",
                f"{where}: text is {len(text)} characters; the limit is {self.config.max_text_chars}",
            )
        stripped = text.strip()
        if not any(_visible(char) for char in stripped):
            what = "empty" if not stripped else "only invisible characters (zero-width, control or format)"
            raise ApiError(422, "empty_text", f"{where}: text is {what}")
        if "\x00" in stripped:  # never text; a C string or a database column would end there
            raise ApiError(422, "invalid_text", f"{where}: text holds a NUL character")
        try:
            stripped.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(422, "invalid_text", f"{where}: text holds unpaired surrogate code points") from None
        return stripped

    # -- events -----------------------------------------------------------------------------------------------
    def _on_event(self, event: AlertEvent) -> None:
        self.metrics.observe_event(event)
        if event.kind == "ended" and not event.alerts_raised:
            logger.debug("conversation %s ended (%s)", log_safe(event.conversation_id), event.reason)
            return
        details = event.to_dict(include_text=self.config.log_transcripts)
        text = f" text={details['text']!r}" if self.config.log_transcripts else ""
        log = logger.warning if event.kind == "alert" else logger.info
        log(
            "%s conversation=%s reason=%s reasons=%s label=%s score=%s turn=%s queue=%s team=%s%s",
            event.kind,
            log_safe(event.conversation_id),
            event.reason,
            ",".join(event.reasons) or "-",
            event.label,
            details["score"],
            event.turn_index,
            log_safe(event.queue),
            log_safe(event.team),
            text,
        )

    def event_dict(self, event: AlertEvent | None) -> dict | None:
        return None if event is None else event.to_dict(include_text=self.config.alert_text)

    def count_turns(self, predictions, endpoint: str) -> None:
        """Count classified turns by predicted label for ``/metrics``."""
        for prediction in predictions:
            self.metrics.turns.labels(prediction.emotion, endpoint).inc()


def _visible(char: str) -> bool:
    """Whether ``char`` shows: not a space, nor a control (Cc) or format (Cf: zero-width, BOM, bidi) character."""
    return not char.isspace() and unicodedata.category(char) not in ("Cc", "Cf")


def get_server(request: Request) -> Server:
    """The :class:`Server` of the app that received ``request`` (a FastAPI dependency)."""
    return request.app.state.server


ServerDep = Annotated[Server, Depends(get_server)]
