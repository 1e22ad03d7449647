"""Micro-batching: concurrent requests share model calls, bounded in size and wait, off the event loop.

No test here sleeps or measures a duration: the batcher's wait runs on a fake clock, a slow model is a gate
the test opens, and every wait for something to happen is an event with a bound that only stops a hang.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from tonewatch.model.types import TurnInput
from tonewatch.serve.app import create_app
from tonewatch.serve.batching import BatcherClosedError, MicroBatcher
from tonewatch.serve.config import ServeConfig


def texts_of(calls) -> list[list[str]]:
    return [[turn.text for turn in call] for call in calls]


def test_a_partial_batch_waits_for_company_until_the_clock_says_its_wait_is_over(
    make_scripted, fake_clock, event_timeout
):
    classifier = make_scripted()
    batcher = MicroBatcher(classifier.classify, max_batch_size=100, max_wait_s=0.01, clock=fake_clock)
    first = batcher.submit([TurnInput("first")])
    # The worker looks at the clock again each time its queue wait runs out; the fake deadline is still
    # ahead, so it must keep waiting rather than send the lone request.
    assert fake_clock.wait_for_reads(5)
    assert classifier.calls == [] and not first.done()
    second = batcher.submit([TurnInput("second")])
    assert fake_clock.wait_for_reads(fake_clock.reads + 3)
    assert classifier.calls == [] and not first.done()
    fake_clock.advance(0.01)  # the wait is over: the partial batch goes
    assert first.result(timeout=event_timeout)[0].emotion == "calm"
    assert second.result(timeout=event_timeout)[0].emotion == "calm"
    batcher.close()
    assert texts_of(classifier.calls) == [["first", "second"]]


def test_a_full_batch_goes_at_once_whatever_the_clock(make_scripted, fake_clock, event_timeout):
    classifier = make_scripted()
    batcher = MicroBatcher(classifier.classify, max_batch_size=2, max_wait_s=3600, clock=fake_clock)
    futures = [batcher.submit([TurnInput(text)]) for text in ("a", "b")]
    # The fake clock never moves: only reaching max_batch_size can send this batch.
    assert [len(future.result(timeout=event_timeout)) for future in futures] == [1, 1]
    batcher.close()
    assert texts_of(classifier.calls) == [["a", "b"]]


def test_concurrent_requests_are_batched_in_order(make_scripted, fake_clock, event_timeout):
    classifier = make_scripted()
    batches = []
    batcher = MicroBatcher(
        classifier.classify,
        max_batch_size=9,
        max_wait_s=3600,
        clock=fake_clock,
        on_batch=lambda *args: batches.append(args),
    )
    texts = [f"[angry 0.{index}] t{index}" for index in range(1, 10)]
    futures = [batcher.submit([TurnInput(text)]) for text in texts]
    results = [future.result(timeout=event_timeout) for future in futures]
    batcher.close()
    # Each request gets its own prediction back...
    assert [result[0].escalate_score for result in results] == pytest.approx([index / 10 for index in range(1, 10)])
    # ...from one model call over all of them, in the order they came.
    assert texts_of(classifier.calls) == [texts]
    assert [(requests, turns) for requests, turns, _ in batches] == [(9, 9)]


def test_batches_are_bounded_and_requests_never_split(make_scripted, fake_clock, event_timeout):
    classifier = make_scripted()
    # The fake clock never moves, so batches are cut only by size: the layout below follows from the order alone.
    batcher = MicroBatcher(classifier.classify, max_batch_size=4, max_wait_s=3600, clock=fake_clock)
    sizes = [3, 2, 1, 6, 2, 2]
    requests = [[TurnInput(f"r{number}-{item}") for item in range(size)] for number, size in enumerate(sizes)]
    futures = [batcher.submit(items) for items in requests]
    results = [future.result(timeout=event_timeout) for future in futures]
    batcher.close()
    assert [[prediction.emotion for prediction in result] for result in results] == [["calm"] * n for n in sizes]
    requests_per_call = [sorted({text.split("-")[0] for text in call}) for call in texts_of(classifier.calls)]
    # r1 does not fit beside r0 (3 + 2 > 4); r3 (6) exceeds the bound and goes alone; r4 + r5 fill a batch.
    assert requests_per_call == [["r0"], ["r1", "r2"], ["r3"], ["r4", "r5"]]
    assert [len(call) for call in classifier.calls] == [3, 3, 6, 4]


def test_the_event_loop_is_not_blocked_by_the_model(make_scripted):
    # The model call can only finish once the event loop opens the gate: had the batcher run the model on
    # the loop (or blocked it waiting for the result), the gate would stay shut and the call time out.
    gate = threading.Event()
    classifier = make_scripted(gate=gate)
    batcher = MicroBatcher(classifier.classify, max_wait_s=0.0)

    async def main():
        prediction = asyncio.ensure_future(batcher.classify([TurnInput("slow")]))
        assert await asyncio.to_thread(classifier.wait_for_calls, 1)  # the model is running, in the worker
        gate.set()
        return await prediction

    (prediction,) = asyncio.run(main())
    batcher.close()
    assert prediction.emotion == "calm"


def test_model_errors_reach_every_waiting_request_and_the_worker_survives(event_timeout):
    calls = []

    def classify(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return [None] * len(items)

    batcher = MicroBatcher(classify, max_wait_s=0.0)
    with pytest.raises(RuntimeError, match="exploded"):
        batcher.submit([TurnInput("a")]).result(timeout=event_timeout)
    assert batcher.submit([TurnInput("b")]).result(timeout=event_timeout) == [None]
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit([TurnInput("c")])


def test_concurrent_http_requests_share_model_calls(make_scripted, monkeypatch, event_timeout):
    gate = threading.Event()
    classifier = make_scripted(gate=gate)
    requests = 8
    app = create_app(ServeConfig(batch_max_wait_ms=50, batch_max_size=64), classifier=classifier)
    # The pool outlives the client: leaving the client closes the batcher, which answers any request still
    # waiting, so a batcher that never sends a batch fails this test instead of hanging it.
    with ThreadPoolExecutor(requests) as pool, TestClient(app, base_url="http://localhost") as client:
        batcher = app.state.server.batcher
        submitted = threading.Condition()
        counts: list[int] = []
        submit = batcher.submit

        def counting_submit(items):
            future = submit(items)
            with submitted:
                counts.append(len(items))
                submitted.notify_all()
            return future

        monkeypatch.setattr(batcher, "submit", counting_submit)

        def post(number: int) -> int:
            if number % 2:
                response = client.post("/v1/classify", json={"texts": [f"text {number}"]})
            else:
                response = client.post(
                    f"/v1/conversations/c{number}/turns", json={"speaker": "customer", "text": f"[angry 0.9] {number}"}
                )
            return response.status_code

        posts = [pool.submit(post, number) for number in range(requests)]
        # The first model call is held at the gate until every request has reached the batcher, so the
        # ones it did not take are all waiting, and go together in the next call.
        try:
            with submitted:
                assert submitted.wait_for(lambda: len(counts) == requests, event_timeout)
        finally:
            gate.set()
        assert [pending.result(timeout=event_timeout) for pending in posts] == [200] * requests
    assert sum(len(call) for call in classifier.calls) == requests
    assert 1 <= len(classifier.calls) <= 2
