"""Micro-batching: concurrent requests share model calls, bounded in size and wait, off the event loop."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from tonewatch.model.types import TurnInput
from tonewatch.serve.app import create_app
from tonewatch.serve.batching import BatcherClosedError, MicroBatcher
from tonewatch.serve.config import ServeConfig


def test_concurrent_requests_are_batched_in_order(make_scripted):
    classifier = make_scripted(delay_s=0.05)
    batches = []
    batcher = MicroBatcher(
        classifier.classify, max_batch_size=64, max_wait_s=0.02, on_batch=lambda *args: batches.append(args)
    )

    async def main():
        texts = [[f"[angry 0.{index}] t{index}"] for index in range(1, 10)]
        return await asyncio.gather(*(batcher.classify([TurnInput(text[0])]) for text in texts))

    results = asyncio.run(main())
    batcher.close()
    # Each request gets its own prediction back...
    assert [result[0].escalate_score for result in results] == pytest.approx([index / 10 for index in range(1, 10)])
    # ...from far fewer model calls than requests.
    assert len(classifier.calls) < 9
    assert sum(len(call) for call in classifier.calls) == 9
    assert sum(requests for requests, _, _ in batches) == 9


def test_batches_are_bounded_and_requests_never_split(make_scripted):
    classifier = make_scripted(delay_s=0.02)
    batcher = MicroBatcher(classifier.classify, max_batch_size=4, max_wait_s=0.05)
    sizes = [3, 2, 1, 6, 2, 1]

    async def main():
        requests = [[TurnInput(f"r{number}-{item}") for item in range(size)] for number, size in enumerate(sizes)]
        return await asyncio.gather(*(batcher.classify(items) for items in requests))

    results = asyncio.run(main())
    batcher.close()
    assert [len(result) for result in results] == sizes
    for call in classifier.calls:
        # A request alone may exceed the bound (6); batches of several requests never do.
        requests_in_call = {turn.text.split("-")[0] for turn in call}
        assert len(call) <= 4 or len(requests_in_call) == 1
        # Every request's turns sit together in one call.
    for number, size in enumerate(sizes):
        holding = [call for call in classifier.calls if any(turn.text.startswith(f"r{number}-") for turn in call)]
        assert len(holding) == 1 and sum(turn.text.startswith(f"r{number}-") for turn in holding[0]) == size


def test_the_wait_is_bounded(make_scripted):
    classifier = make_scripted()
    batcher = MicroBatcher(classifier.classify, max_batch_size=1000, max_wait_s=0.05)
    started = time.perf_counter()
    (prediction,) = batcher.submit([TurnInput("alone")]).result(timeout=5)
    elapsed = time.perf_counter() - started
    batcher.close()
    assert prediction.emotion == "calm" and elapsed < 1.0


def test_the_event_loop_is_not_blocked_by_the_model(make_scripted):
    classifier = make_scripted(delay_s=0.3)
    batcher = MicroBatcher(classifier.classify, max_wait_s=0.0)
    ticks = []

    async def ticker():
        for _ in range(5):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    async def main():
        await asyncio.gather(batcher.classify([TurnInput("slow")]), ticker())

    asyncio.run(main())
    batcher.close()
    assert len(ticks) == 5 and ticks[-1] - ticks[0] < 0.25  # ticked while the model was busy for 0.3 s


def test_model_errors_reach_every_waiting_request_and_the_worker_survives():
    calls = []

    def classify(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return [None] * len(items)

    batcher = MicroBatcher(classify, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.submit([TurnInput("a")]).result(timeout=5)
    assert batcher.submit([TurnInput("b")]).result(timeout=5) == [None]
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit([TurnInput("c")])


def test_concurrent_http_requests_share_model_calls(make_scripted):
    classifier = make_scripted(delay_s=0.1)
    config = ServeConfig(batch_max_wait_ms=50, batch_max_size=64)
    requests = 8
    with TestClient(create_app(config, classifier=classifier)) as client:
        barrier = threading.Barrier(requests)

        def post(number: int) -> int:
            barrier.wait()
            if number % 2:
                response = client.post("/v1/classify", json={"texts": [f"text {number}"]})
            else:
                response = client.post(
                    f"/v1/conversations/c{number}/turns", json={"speaker": "customer", "text": f"[angry 0.9] {number}"}
                )
            return response.status_code

        with ThreadPoolExecutor(requests) as pool:
            statuses = list(pool.map(post, range(requests)))
    assert statuses == [200] * requests
    assert sum(len(call) for call in classifier.calls) == requests
    assert len(classifier.calls) < requests / 2
