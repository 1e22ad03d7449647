"""Micro-batching: concurrent requests share one model call.

Requests put their turns on a queue; one worker thread takes the first
waiting request, lets others join for at most ``max_wait_s`` or until
``max_batch_size`` turns are gathered, runs one model call for all of them,
and hands each request its own predictions. The model runs in that thread,
never on the event loop, and one call at a time (torch already uses every
core it is given). A request larger than ``max_batch_size`` is one call on
its own; a request is never split across calls.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from tonewatch.model.types import Prediction, TurnInput

logger = logging.getLogger(__name__)

ClassifyFunction = Callable[[Sequence[TurnInput]], list[Prediction]]


class BatcherClosedError(RuntimeError):
    """The batcher was closed; no more requests are taken."""


@dataclass
class _Request:
    items: list[TurnInput]
    future: Future


_STOP = object()


class MicroBatcher:
    """Gathers concurrent classification requests into bounded batches run in one worker thread."""

    def __init__(
        self,
        classify: ClassifyFunction,
        *,
        max_batch_size: int = 32,
        max_wait_s: float = 0.005,
        on_batch: Callable[[int, int, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """``on_batch(requests, turns, seconds)`` is called after every model call (for metrics).

        ``clock`` (monotonic seconds) times the wait for company; a test passes a fake one, so that the clock,
        not the queue's own timeout, says when a partial batch has waited long enough.
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
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._carry: _Request | None = None  # a request that did not fit the previous batch

    @property
    def closed(self) -> bool:
        return self._closed

    def submit(self, items: Sequence[TurnInput]) -> Future:
        """Queue ``items``; the future resolves to their predictions, in order."""
        future: Future = Future()
        if not items:
            future.set_result([])
            return future
        with self._lock:
            if self._closed:
                raise BatcherClosedError("the batcher is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="tonewatch-batcher", daemon=True)
                self._thread.start()
            self._queue.put(_Request(list(items), future))
        return future

    async def classify(self, items: Sequence[TurnInput]) -> list[Prediction]:
        """Predictions for ``items``, computed in a shared batch without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(items))

    def close(self, timeout: float = 5.0) -> None:
        """Stop taking requests, finish the queued ones, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)

    def _next_batch(self) -> list[_Request] | None:
        first = self._carry if self._carry is not None else self._queue.get()
        self._carry = None
        if first is _STOP:
            return None
        batch, size = [first], len(first.items)
        deadline = self._clock() + self.max_wait_s
        while size < self.max_batch_size:
            remaining = deadline - self._clock()
            try:
                request = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                # The queue's timeout runs on time.monotonic: with the default clock the deadline has passed
                # whenever it expires; an injected clock decides for itself.
                if remaining <= 0 or self._clock() >= deadline:
                    break
                continue
            if request is _STOP or size + len(request.items) > self.max_batch_size:
                self._carry = request
                break
            batch.append(request)
            size += len(request.items)
        return batch

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            # A request whose caller went away (cancelled) costs no model time.
            batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            items = [item for request in batch for item in request.items]
            started = time.perf_counter()
            try:
                predictions = self._classify(items)
            except Exception as error:  # the model failed: every waiting request gets the error
                logger.exception("model call on %d turns failed", len(items))
                for request in batch:
                    request.future.set_exception(error)
                continue
            seconds = time.perf_counter() - started
            position = 0
            for request in batch:
                request.future.set_result(predictions[position : position + len(request.items)])
                position += len(request.items)
            if self._on_batch is not None:
                self._on_batch(len(batch), len(items), seconds)
        # Closed: anything still queued is refused rather than left waiting forever.
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                break
            if request is not _STOP and request.future.set_running_or_notify_cancel():
                request.future.set_exception(BatcherClosedError("the batcher is closed"))
