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
from tonewatch.serve.batching import BULK, LIVE, BatcherClosedError, MicroBatcher
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

        def counting_submit(items, priority=LIVE):
            future = submit(items, priority)
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
        # ones it did not take are all waiting: the live turns go together in the next call, the texts
        # (bulk work) together after them.
        try:
            with submitted:
                assert submitted.wait_for(lambda: len(counts) == requests, event_timeout)
        finally:
            gate.set()
        assert [pending.result(timeout=event_timeout) for pending in posts] == [200] * requests
    assert sum(len(call) for call in classifier.calls) == requests
    assert 1 <= len(classifier.calls) <= 3
    kinds = [{"live" if "[angry" in text else "bulk" for text in call} for call in texts_of(classifier.calls)]
    assert all(len(kind) == 1 for kind in kinds)  # live turns and bulk texts never share a call
    assert kinds[1:] == sorted(kinds[1:], key=lambda kind: "bulk" in kind)  # live first


class SteppedModel:
    """A model whose calls each wait until the test lets that one call go (:meth:`step`)."""

    def __init__(self, timeout: float, fail_first: bool = False):
        self.timeout = timeout
        self.fail_first = fail_first
        self.calls: list[list[str]] = []
        self._called = threading.Condition()
        self._go = threading.Semaphore(0)

    def classify(self, items):
        with self._called:
            self.calls.append([item.text for item in items])
            self._called.notify_all()
        if not self._go.acquire(timeout=self.timeout):
            raise TimeoutError("the test never let this call go")
        if self.fail_first and len(self.calls) == 1:
            raise RuntimeError("model exploded")
        return [item.text for item in items]  # a prediction that says which turn it is for

    def wait_for_calls(self, count: int) -> bool:
        with self._called:
            return self._called.wait_for(lambda: len(self.calls) >= count, self.timeout)

    def step(self) -> None:
        self._go.release()


def texts(prefix: str, count: int) -> list[TurnInput]:
    return [TurnInput(f"{prefix}{number}") for number in range(count)]


def test_bulk_work_goes_in_chunks_and_a_live_turn_waits_for_one_chunk_at_most(fake_clock, event_timeout):
    model = SteppedModel(event_timeout)
    # The fake clock never moves and no wait for company is asked: batches are cut by size and priority alone.
    batcher = MicroBatcher(model.classify, max_batch_size=4, max_wait_s=0.0, clock=fake_clock)
    bulk = batcher.submit(texts("b", 10), BULK)
    assert model.wait_for_calls(1)  # the first chunk of the bulk request is running
    later_bulk = batcher.submit(texts("c", 3), BULK)
    live = batcher.submit(texts("live", 1))  # live is the default
    for _ in range(5):
        model.step()
    assert live.result(timeout=event_timeout) == ["live0"]
    assert bulk.result(timeout=event_timeout) == [f"b{number}" for number in range(10)]
    assert later_bulk.result(timeout=event_timeout) == ["c0", "c1", "c2"]
    batcher.close()
    # The live turn went right after the chunk that was running, before the rest of the bulk work queued
    # before it; bulk chunks hold at most max_batch_size turns, and small bulk requests share a chunk.
    assert model.calls == [
        ["b0", "b1", "b2", "b3"],
        ["live0"],
        ["b4", "b5", "b6", "b7"],
        ["b8", "b9", "c0", "c1"],
        ["c2"],
    ]


def test_a_batch_is_bounded_by_the_turns_cost_and_live_requests_stay_whole(fake_clock, event_timeout):
    model = SteppedModel(event_timeout)
    # A turn "x:3" costs 3 (the server counts the windows a long turn is read in).
    batcher = MicroBatcher(
        model.classify,
        max_batch_size=4,
        max_wait_s=0.0,
        clock=fake_clock,
        cost=lambda turn: int(turn.text.split(":")[1]),
    )
    bulk = batcher.submit([TurnInput(f"t{number}:{cost}") for number, cost in enumerate([3, 3, 1, 5, 1])], BULK)
    assert model.wait_for_calls(1)
    live = batcher.submit([TurnInput("l0:2"), TurnInput("l1:3")])  # 5 > 4: one call of its own, not split
    for _ in range(5):
        model.step()
    assert len(bulk.result(timeout=event_timeout)) == 5 and live.result(timeout=event_timeout) == ["l0:2", "l1:3"]
    batcher.close()
    assert model.calls == [["t0:3"], ["l0:2", "l1:3"], ["t1:3", "t2:1"], ["t3:5"], ["t4:1"]]


def test_a_failed_chunk_fails_its_bulk_request_whose_rest_is_not_run(fake_clock, event_timeout):
    model = SteppedModel(event_timeout, fail_first=True)
    batcher = MicroBatcher(model.classify, max_batch_size=2, max_wait_s=0.0, clock=fake_clock)
    failing = batcher.submit(texts("a", 4), BULK)
    assert model.wait_for_calls(1)
    other = batcher.submit(texts("o", 1), BULK)
    model.step()
    with pytest.raises(RuntimeError, match="exploded"):
        failing.result(timeout=event_timeout)
    model.step()
    assert other.result(timeout=event_timeout) == ["o0"]
    batcher.close()
    assert model.calls == [["a0", "a1"], ["o0"]]
    with pytest.raises(ValueError, match="unknown priority"):
        MicroBatcher(model.classify).submit(texts("x", 1), "urgent")


def test_a_live_turn_is_answered_while_a_large_classify_request_is_still_running(
    make_scripted, monkeypatch, event_timeout
):
    gate = threading.Event()
    classifier = make_scripted(gate=gate)
    app = create_app(ServeConfig(batch_max_wait_ms=0, batch_max_size=4), classifier=classifier)
    with ThreadPoolExecutor(2) as pool, TestClient(app, base_url="http://localhost") as client:
        batcher = app.state.server.batcher
        live_submitted = threading.Event()
        submit = batcher.submit

        def watching_submit(items, priority=LIVE):
            future = submit(items, priority)
            if priority == LIVE:
                live_submitted.set()
            return future

        monkeypatch.setattr(batcher, "submit", watching_submit)
        bulk = pool.submit(client.post, "/v1/classify", json={"texts": [f"text {number}" for number in range(12)]})
        try:
            assert classifier.wait_for_calls(1)  # the first chunk of four texts holds the model
            live = pool.submit(
                client.post, "/v1/conversations/c1/turns", json={"speaker": "customer", "text": "[angry 0.9] now"}
            )
            assert live_submitted.wait(event_timeout)  # the live turn waits behind that one chunk
        finally:
            gate.set()
        assert live.result(timeout=event_timeout).status_code == 200
        assert bulk.result(timeout=event_timeout).status_code == 200
    calls = texts_of(classifier.calls)
    assert [len(call) for call in calls] == [4, 1, 4, 4]
    assert calls[1] == ["[angry 0.9] now"]
