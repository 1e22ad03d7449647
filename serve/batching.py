"""Micro-batching: concurrent requests share one model call, live turns before bulk texts.

Requests put their turns on one of two queues. ``live`` requests (a turn of a live conversation) always go
first: one worker thread takes the first waiting live request, lets other live requests join for at most
``max_wait_s`` or until ``max_batch_size`` is reached, runs one model call for all of them, and hands each
request its own predictions; a live request is never split across calls (one larger than ``max_batch_size``
is one call on its own). ``bulk`` requests (``/v1/classify``) are run only while no live request waits, and
in pieces: each call takes at most ``max_batch_size`` of their turns, so a live turn that arrives while bulk
work is running waits for at most one such call, never for a whole bulk request, and never for bulk work
queued before it. Bulk requests are taken in the order they came; small ones share calls.

What counts toward ``max_batch_size`` is each turn's ``cost`` (default 1; the server counts the windows a
long turn is read in, which are model rows). The model runs in the worker thread, never on the event loop,
and one call at a time (the runtime already uses every core it is given). Live work can starve bulk work
while it keeps the model busy: that is the point.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from tonewatch.model.types import Prediction, TurnInput

logger = logging.getLogger(__name__)

ClassifyFunction = Callable[[Sequence[TurnInput]], list[Prediction]]

LIVE = "live"
BULK = "bulk"
PRIORITIES = (LIVE, BULK)
"""``live`` requests always run before ``bulk`` ones, and are never split; ``bulk`` ones run in pieces."""


class BatcherClosedError(RuntimeError):
    """The batcher was closed; no more requests are taken."""


@dataclass
class _Request:
    items: list[TurnInput]
    future: Future
    started: bool = False
    """Whether the worker has begun on it (its future is running: its caller can no longer cancel it)."""
    taken: int = 0
    """How many of ``items`` model calls have taken (a bulk request goes in pieces)."""
    costs: list[int] = field(default_factory=list)
    """The cost of ``items[0]``, ``items[1]``, ... as far as counted."""
    predictions: list[Prediction] = field(default_factory=list)


@dataclass
class _Piece:
    request: _Request
    start: int
    end: int


class MicroBatcher:
    """Gathers concurrent classification requests into bounded batches run in one worker thread, live first."""

    def __init__(
        self,
        classify: ClassifyFunction,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        cost: Callable[[TurnInput], int] | None = None,
    ):
        """``on_batch(requests, turns, seconds)`` is called after every model call (for metrics).

        ``clock`` (monotonic seconds) times the wait for company; a test passes a fake one, so that the clock,
        not the condition's own timeout, says when a partial batch has waited long enough. ``cost(turn)`` is
        what a turn counts toward ``max_batch_size`` (default 1); it is called in the worker thread.
        """
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._classify = classify
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._clock = clock
        self._cost = cost
        self._queues: dict[str, deque[_Request]] = {priority: deque() for priority in PRIORITIES}
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, items: Sequence[TurnInput], priority: str = LIVE) -> Future:
        """Queue ``items`` as ``live`` (default) or ``bulk`` work; the future resolves to their predictions, in
        order."""
        if priority not in PRIORITIES:
            raise ValueError(f"unknown priority {priority!r}; expected one of {PRIORITIES}")
        future: Future = Future()
        if not items:
            future.set_result([])
            return future
        with self._condition:
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tonewatch-batcher", daemon=True)
                self._thread.start()
            self._queues[priority].append(_Request(list(items), future))
            self._condition.notify_all()
        return future

    async def classify(self, items: Sequence[TurnInput], priority: str = LIVE) -> list[Prediction]:
        """Predictions for ``items``, computed in a shared batch without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(items, priority))

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking requests, finish the queued ones, stop the worker."""
        with self._condition:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._condition.notify_all()
        if thread is not None:
            thread.join(timeout)

    def _item_cost(self, request: _Request, index: int) -> int:
        """What ``request.items[index]`` counts toward a batch (counted once, in the worker thread)."""
        while len(request.costs) <= index:
            item = request.items[len(request.costs)]
            request.costs.append(1 if self._cost is None else self._cost(item))
        return request.costs[index]

    def _front(self, priority: str) -> _Request | None:
        """The first waiting request of ``priority`` that a caller still wants (cancelled ones are dropped).
        Call with the lock held."""
        queue = self._queues[priority]
        while queue:
            request = queue[0]
            if request.started:
                return request
            if request.future.set_running_or_notify_cancel():
                request.started = True
                return request
            queue.popleft()  # its caller went away: it costs no model time
        return None

    def _wait_for_work(self) -> str | None:
        """The priority to serve next, waiting until there is work; None once closed with nothing left."""
        with self._condition:
            while True:
                for priority in PRIORITIES:
                    if self._front(priority) is not None:
                        return priority
                if self._closed:
                    return None
                self._condition.wait()

    def _fits(self, request: _Request, priority: str, room: int, first: bool) -> int:
        """How many more of ``request``'s turns this call takes: all of a live request or none (a request
        alone in its call is taken whatever its cost), as many of a bulk request's next turns as ``room``
        holds (at least one in a call of its own)."""
        if priority == LIVE:
            cost = sum(self._item_cost(request, index) for index in range(len(request.items)))
            return len(request.items) if first or cost <= room else 0
        count = 0
        for index in range(request.taken, len(request.items)):
            cost = self._item_cost(request, index)
            if cost > room and not (first and count == 0):
                break
            room -= cost
            count += 1
        return count

    def _next_batch(self) -> list[_Piece] | None:
        """The pieces of the next model call: live requests whole, else pieces of bulk requests; None once
        closed and done."""
        priority = self._wait_for_work()
        if priority is None:
            return None
        pieces: list[_Piece] = []
        size = 0
        deadline = self._clock() + self.max_wait_s
        while size < self.max_batch_size:
            with self._condition:
                request = self._front(priority)
                if request is None:
                    # Wait for company, unless closing, or (bulk work) a live request waits: it goes next.
                    if self._closed or (priority == BULK and self._front(LIVE) is not None):
                        break
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    # The condition's timeout runs on time.monotonic; the loop asks the clock again either way.
                    self._condition.wait(remaining)
                    continue
            # Only this thread takes from the queues, so ``request`` stays at the front while its turns are
            # counted here, outside the lock (the server's cost tokenises).
            try:
                count = self._fits(request, priority, self.max_batch_size - size, first=not pieces)
            except Exception as error:  # a turn that cannot be counted cannot be run either
                logger.exception("could not count the cost of a request's turns")
                self._fail([_Piece(request, request.taken, len(request.items))], error)
                continue
            if count == 0:
                break  # it waits at the front for the next call
            start, end = request.taken, request.taken + count
            size += sum(request.costs[start:end])
            with self._condition:
                pieces.append(_Piece(request, start, end))
                request.taken = end
                if end == len(request.items):
                    self._queues[priority].popleft()
        return pieces

    def _run(self) -> None:
        while True:
            pieces = self._next_batch()
            if pieces is None:
                break
            items = [item for piece in pieces for item in piece.request.items[piece.start : piece.end]]
            started = time.perf_counter()
            try:
                predictions = self._classify(items)
            except Exception as error:  # the model failed: every request in the call gets the error
                logger.exception("model call on %d turns failed", len(items))
                self._fail(pieces, error)
                continue
            seconds = time.perf_counter() - started
            position = 0
            for piece in pieces:
                request = piece.request
                request.predictions.extend(predictions[position : position + piece.end - piece.start])
                position += piece.end - piece.start
                if piece.end == len(request.items):
                    request.future.set_result(request.predictions)
            if self._on_batch is not None:
                self._on_batch(len(pieces), len(items), seconds)

    def _fail(self, pieces: list[_Piece], error: Exception) -> None:
        """Every request of ``pieces`` gets ``error``; what is left of them is not run."""
        with self._condition:
            for piece in pieces:
                request = piece.request
                for queue in self._queues.values():
                    if request in queue:
                        queue.remove(request)
                request.taken = len(request.items)
                request.future.set_exception(error)
