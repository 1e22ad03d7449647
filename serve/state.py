"""The live conversations of a server: trackers by id, idle expiry, riskiest first."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from tonewatch.tracking import AlertEvent, ConversationState, ConversationTracker


class CapacityError(RuntimeError):
    """The store holds ``max_conversations`` live conversations already."""


class LiveConversation:
    """A tracker and the lock that keeps its turns in order while a prediction is awaited."""

    def __init__(self, tracker: ConversationTracker):
        self.tracker = tracker
        self.lock = asyncio.Lock()
        self.ended = False


class ConversationStore:
    """Live conversations by id. A conversation without a new turn for ``idle_timeout_s`` expires.

    ``new_tracker(conversation_id)`` makes the tracker of a new conversation (whose ``on_event``
    publishes its events, the ``ended`` event of a deleted or expired conversation included).
    ``clock`` is monotonic seconds (injectable for tests) and must be the trackers' clock too.
    """

    def __init__(
        self,
        new_tracker: Callable[[str], ConversationTracker],
        *,
        idle_timeout_s: float = 900.0,
        sweep_interval_s: float = 5.0,
        max_conversations: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._new_tracker = new_tracker
        self.idle_timeout_s = idle_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self.max_conversations = max_conversations
        self._clock = clock
        self._conversations: dict[str, LiveConversation] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def __len__(self) -> int:
        return len(self._conversations)

    def get(self, conversation_id: str) -> LiveConversation | None:
        """The live conversation ``conversation_id``, or ``None`` (also when it is idle past the timeout)."""
        self.maybe_sweep()
        with self._lock:
            live = self._conversations.get(conversation_id)
            expired = live is not None and self._idle(live)
            if expired:
                del self._conversations[conversation_id]
        if expired:
            self._ended(live, "expired")
            return None
        return live

    def get_or_create(self, conversation_id: str) -> tuple[LiveConversation, bool]:
        """The live conversation ``conversation_id``, made when new (or expired); and whether it was made."""
        self.maybe_sweep()
        expired = None
        with self._lock:
            live = self._conversations.get(conversation_id)
            if live is not None and self._idle(live):
                expired = self._conversations.pop(conversation_id)
                live = None
            if live is not None:
                return live, False
            if len(self._conversations) >= self.max_conversations:
                raise CapacityError(f"{self.max_conversations} live conversations already; end some first")
            live = LiveConversation(self._new_tracker(conversation_id))
            self._conversations[conversation_id] = live
        if expired is not None:
            self._ended(expired, "expired")
        return live, True

    def end(self, conversation_id: str, reason: str = "deleted") -> AlertEvent | None:
        """Drop ``conversation_id`` and publish its ``ended`` event; ``None`` when it is not live."""
        with self._lock:
            live = self._conversations.pop(conversation_id, None)
        if live is None:
            return None
        return self._ended(live, reason)

    def states(
        self, keep: Callable[[ConversationTracker], bool] | None = None, limit: int | None = None
    ) -> tuple[int, list[ConversationState]]:
        """How many live conversations ``keep`` accepts, and the states of the ``limit`` riskiest of them."""
        self.maybe_sweep()
        with self._lock:
            trackers = [live.tracker for live in self._conversations.values()]
        if keep is not None:
            trackers = [tracker for tracker in trackers if keep(tracker)]
        # Rank on the cheap key; build full states (with their turns) only for the ones returned.
        ranked = sorted(trackers, key=ConversationTracker.sort_key, reverse=True)
        return len(trackers), [tracker.state for tracker in ranked[:limit]]

    def sweep(self) -> list[str]:
        """End every conversation idle for ``idle_timeout_s`` or more; their ids."""
        now = self._clock()
        self._last_sweep = now
        with self._lock:
            idle = [conversation_id for conversation_id, live in self._conversations.items() if self._idle(live, now)]
            expired = [self._conversations.pop(conversation_id) for conversation_id in idle]
        for live in expired:
            self._ended(live, "expired")
        return idle

    def maybe_sweep(self) -> list[str]:
        """:meth:`sweep` when ``sweep_interval_s`` has passed since the last one (cheap to call on every request)."""
        if self._clock() - self._last_sweep < self.sweep_interval_s:
            return []
        return self.sweep()

    def _idle(self, live: LiveConversation, now: float | None = None) -> bool:
        """Idle past the timeout, and not waiting for a prediction (a turn in progress keeps it alive)."""
        now = self._clock() if now is None else now
        return now - live.tracker.last_activity >= self.idle_timeout_s and not live.lock.locked()

    def _ended(self, live: LiveConversation, reason: str) -> AlertEvent:
        live.ended = True
        return live.tracker.end(reason)
