"""The live conversations of a server: trackers by id, idle expiry, riskiest first.

:class:`ConversationStore` keeps them in this process's memory (a restart loses them);
:class:`tonewatch.serve.redis_state.RedisConversationStore` keeps them in Redis, shared by
every server process and kept across restarts. Routes use the async methods both have:
:meth:`~ConversationStore.turn` (a context in which one turn of one conversation is added,
alone), :meth:`~ConversationStore.fetch`, :meth:`~ConversationStore.finish`,
:meth:`~ConversationStore.list_states`, :meth:`~ConversationStore.expire_idle` and
:meth:`~ConversationStore.problem` (why the store cannot take turns now, for ``/readyz``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import AsyncIterator, Callable

from tonewatch.tracking import AlertEvent, ConversationState, ConversationTracker


class CapacityError(RuntimeError):
    """The store holds ``max_conversations`` live conversations already, or the key its own limit.

    ``retry_after_s``: when the first of those conversations expires if it stays idle (seconds, at least 1)."""

    def __init__(self, message: str, retry_after_s: float = 5.0):
        super().__init__(message)
        self.retry_after_s = max(1, math.ceil(retry_after_s))


class ConversationEndedError(RuntimeError):
    """The conversation ended (DELETE, expiry) while a turn was being added to it."""


class StateUnavailableError(RuntimeError):
    """The shared state (Redis) cannot be reached: turns are refused until it is back."""


class ConversationBusyError(RuntimeError):
    """Another turn of the same conversation held it for longer than the store waits."""


class LiveConversation:
    """A tracker and the lock that keeps its turns in order while a prediction is awaited.

    ``event``: the latest event published for it by this process (numbered), for the turn's response."""

    def __init__(self, tracker: ConversationTracker | None = None, owner: str | None = None):
        self.tracker = tracker
        self.owner = owner
        self.lock = asyncio.Lock()
        self.ended = False
        self.event: AlertEvent | None = None

    def published(self, event: AlertEvent) -> AlertEvent:
        self.event = event
        return event


class ConversationStore:
    """Live conversations by id. A conversation without a new turn for ``idle_timeout_s`` expires.

    ``new_tracker(conversation_id, on_event)`` makes the tracker of a new conversation, whose events go to
    ``on_event`` (this store hands it ``publish``, an alert hub's: it returns the numbered event), the ``ended``
    event of a deleted or expired conversation included. ``clock`` is monotonic seconds (injectable for tests)
    and must be the trackers' clock too. ``max_per_owner``: most live conversations opened by one owner (an API
    key's name) at once.
    """

    shared = False
    """Whether other server processes see these conversations (and a restart keeps them)."""

    def __init__(
        self,
        new_tracker: Callable[..., ConversationTracker],
        *,
        idle_timeout_s: float = 900.0,
        sweep_interval_s: float = 5.0,
        max_conversations: int = 10_000,
        max_per_owner: int | None = None,
        publish: Callable[[AlertEvent], AlertEvent] = lambda event: event,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._new_tracker = new_tracker
        self._publish = publish
        self.idle_timeout_s = idle_timeout_s
        self.sweep_interval_s = sweep_interval_s
        self.max_conversations = max_conversations
        self.max_per_owner = max_per_owner
        self._clock = clock
        self._conversations: dict[str, LiveConversation] = {}
        self._lock = threading.Lock()
        self._last_sweep = clock()

    def __len__(self) -> int:
        return len(self._conversations)

    # -- the routes' API (shared with the Redis store) ----------------------------------------------------------
    async def start(self) -> None:
        """Nothing to connect to: memory is always there."""

    async def close(self) -> None:
        """Nothing to release."""

    def problem(self) -> str | None:
        """Why turns cannot be taken now (``None``: they can)."""
        return None

    async def count(self) -> int:
        return len(self)

    @contextlib.asynccontextmanager
    async def turn(self, conversation_id: str, owner: str | None = None) -> AsyncIterator[LiveConversation]:
        """The live conversation ``conversation_id`` (made when new), held for one turn: no other turn of it runs
        until the block ends. Raises :class:`CapacityError`, or :class:`ConversationEndedError` when it keeps
        ending while the turn waits for it."""
        for _ in range(3):  # the conversation may end (DELETE, expiry) while this turn waits for its lock
            live, _created = self.get_or_create(conversation_id, owner)
            async with live.lock:
                if live.ended:
                    continue
                yield live
                return
        raise ConversationEndedError("the conversation ended while this turn was being added")

    async def fetch(self, conversation_id: str) -> ConversationState | None:
        live = self.get(conversation_id)
        return None if live is None else live.tracker.state

    async def finish(self, conversation_id: str, reason: str = "deleted") -> AlertEvent | None:
        return self.end(conversation_id, reason)

    async def list_states(
        self, keep: Callable[[ConversationTracker], bool] | None = None, limit: int | None = None
    ) -> tuple[int, list[ConversationState]]:
        return self.states(keep, limit)

    async def expire_idle(self) -> list[str]:
        return self.maybe_sweep()

    # -- the synchronous store ----------------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """The ids of the live conversations."""
        with self._lock:
            return list(self._conversations)

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

    def get_or_create(self, conversation_id: str, owner: str | None = None) -> tuple[LiveConversation, bool]:
        """The live conversation ``conversation_id``, made when new (or expired) for ``owner`` (an API key's
        name); and whether it was made."""
        self.maybe_sweep()
        expired = None
        with self._lock:
            live = self._conversations.get(conversation_id)
            if live is not None and self._idle(live):
                expired = self._conversations.pop(conversation_id)
                live = None
            if live is not None:
                return live, False
            self._check_capacity(owner)
            live = LiveConversation(owner=owner)
            live.tracker = self._new_tracker(conversation_id, lambda event: live.published(self._publish(event)))
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

    def _check_capacity(self, owner: str | None) -> None:
        """Raise :class:`CapacityError` when a new conversation of ``owner`` does not fit (under ``_lock``)."""
        conversations = list(self._conversations.values())
        if len(conversations) >= self.max_conversations:
            raise CapacityError(
                f"{self.max_conversations} live conversations already; end some first (DELETE)",
                self._first_expiry(conversations),
            )
        if self.max_per_owner is not None:
            owned = [live for live in conversations if live.owner == owner]
            if len(owned) >= self.max_per_owner:
                who = f"key {owner!r}" if owner else "this client"
                raise CapacityError(
                    f"{who} holds {len(owned)} live conversations, its limit; end some first (DELETE)",
                    self._first_expiry(owned),
                )

    def _first_expiry(self, conversations: list[LiveConversation]) -> float:
        """Seconds until the first of ``conversations`` expires if none of them gets another turn."""
        latest_idle_start = min(live.tracker.last_activity for live in conversations)
        return latest_idle_start + self.idle_timeout_s - self._clock()

    def _idle(self, live: LiveConversation, now: float | None = None) -> bool:
        """Idle past the timeout, and not waiting for a prediction (a turn in progress keeps it alive)."""
        now = self._clock() if now is None else now
        return now - live.tracker.last_activity >= self.idle_timeout_s and not live.lock.locked()

    def _ended(self, live: LiveConversation, reason: str) -> AlertEvent:
        live.ended = True
        return live.tracker.end(reason)
