"""Publish/subscribe of supervisor events (alert raised, all clear, conversation ended) for the SSE stream.

Each subscriber has a bounded buffer: a client that does not keep up loses
its oldest events (and is told how many), never the server's memory. Events
are handed to a subscriber on its own event loop with ``call_soon_threadsafe``,
so publishing is safe from any thread or loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from collections import deque
from collections.abc import Callable

from tonewatch.tracking import AlertEvent, ConversationState, ConversationTracker


@dataclasses.dataclass(frozen=True)
class EventFilter:
    """Which events a subscriber wants: all, or those of one queue and/or one team."""

    queue: str | None = None
    team: str | None = None

    def matches(self, event: AlertEvent | ConversationState | ConversationTracker) -> bool:
        """Whether ``event`` (or a conversation) belongs to the wanted queue and team."""
        return (self.queue is None or event.queue == self.queue) and (self.team is None or event.team == self.team)


class Subscription:
    """One stream client's bounded buffer of events."""

    def __init__(self, hub: AlertHub, event_filter: EventFilter, size: int, loop: asyncio.AbstractEventLoop):
        self._hub = hub
        self.filter = event_filter
        self._loop = loop
        self._buffer: deque[AlertEvent] = deque(maxlen=size)
        self._ready = asyncio.Event()
        self.dropped = 0
        self.closed = False
        self.finished = False
        """The server is stopping: the stream sends what it has and ends (its client reconnects elsewhere)."""

    def offer(self, event: AlertEvent) -> None:
        """Hand ``event`` to the subscriber (from any thread)."""
        if self.closed or not self.filter.matches(event):
            return
        try:
            self._loop.call_soon_threadsafe(self._deliver, event)
        except RuntimeError:  # the subscriber's loop is closed: it is gone (unsubscribed by its stream's cleanup)
            self.closed = True

    def _deliver(self, event: AlertEvent) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def finish(self) -> None:
        """End the stream after the events already offered (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(self._finish)
        except RuntimeError:
            self.closed = True

    def _finish(self) -> None:
        self.finished = True
        self._ready.set()

    async def next(self, timeout: float) -> AlertEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds without one (at once when :attr:`finished`)."""
        if not self._buffer and not self.finished:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                return None
        return self._buffer.popleft() if self._buffer else None

    def take_dropped(self) -> int:
        dropped, self.dropped = self.dropped, 0
        return dropped

    def close(self) -> None:
        self.closed = True
        self._hub.unsubscribe(self)


class AlertHub:
    """Numbers events, keeps the latest ``recent`` of them, and fans them out to subscribers."""

    def __init__(
        self,
        queue_size: int = 100,
        recent: int = 200,
        on_publish: Callable[[AlertEvent], None] | None = None,
        first_id: int = 1,
    ):
        """``first_id``: the id of the first event published (a server starts from its start time in
        microseconds, so that ids keep growing across restarts and a client never takes a new event for one it
        has seen)."""
        self.queue_size = queue_size
        self._recent: deque[AlertEvent] = deque(maxlen=recent)
        self._subscribers: set[Subscription] = set()
        self._ids = itertools.count(first_id)
        self._lock = threading.Lock()
        self._on_publish = on_publish

    @property
    def subscriber_count(self) -> int:
        with self._lock:
            return len(self._subscribers)

    def publish(self, event: AlertEvent) -> AlertEvent:
        """Number ``event``, keep it, and send it to every matching subscriber; returns the numbered event."""
        with self._lock:  # offering under the lock keeps every subscriber's events in id order
            event = dataclasses.replace(event, id=next(self._ids))
            self._recent.append(event)
            for subscription in list(self._subscribers):
                subscription.offer(event)
        if self._on_publish is not None:
            self._on_publish(event)
        return event

    def deliver(self, event: AlertEvent, *, fan_out: bool = True) -> None:
        """Keep an event numbered elsewhere (the shared stream of a Redis-backed server) and send it to every
        matching subscriber; ``fan_out=False`` only keeps it (the history read at startup)."""
        with self._lock:
            if self._recent and event.id <= self._recent[-1].id:
                return  # already kept (read twice across a reconnect)
            self._recent.append(event)
            if fan_out:
                for subscription in list(self._subscribers):
                    subscription.offer(event)

    @property
    def recent_size(self) -> int:
        """How many events are kept."""
        return self._recent.maxlen or 0

    @property
    def last_id(self) -> int:
        """The id of the newest kept event (0 before any)."""
        with self._lock:
            return self._recent[-1].id if self._recent else 0

    def recent(self, event_filter: EventFilter | None = None, after_id: int = 0, limit: int | None = None):
        """Kept events (oldest first) matching ``event_filter`` with an id above ``after_id``; the last ``limit``."""
        event_filter = event_filter or EventFilter()
        with self._lock:
            events = [event for event in self._recent if event.id > after_id and event_filter.matches(event)]
        return events[-limit:] if limit else events

    def subscribe(self, event_filter: EventFilter | None = None, after_id: int | None = None) -> Subscription:
        """A subscription on the running event loop; ``after_id`` replays kept events newer than it first."""
        subscription = Subscription(self, event_filter or EventFilter(), self.queue_size, asyncio.get_running_loop())
        with self._lock:
            self._subscribers.add(subscription)
            if after_id is not None:
                for event in self._recent:
                    if event.id > after_id:
                        subscription.offer(event)
        return subscription

    def finish_streams(self) -> None:
        """End every subscriber's stream once it has sent what it was offered (the server is stopping)."""
        with self._lock:
            for subscription in list(self._subscribers):
                subscription.finish()

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            self._subscribers.discard(subscription)
