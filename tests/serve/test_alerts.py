"""The alert hub (pub/sub with filters and bounded buffers) and the SSE stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import selectors
import threading

from fastapi.testclient import TestClient

from tonewatch.serve.alerts import AlertHub, EventFilter
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig
from tonewatch.tracking import AlertEvent


def event(conversation_id: str, kind: str = "alert", queue: str | None = None, team: str | None = None):
    return AlertEvent(kind=kind, conversation_id=conversation_id, reason="escalation", queue=queue, team=team)


async def received(subscription, count: int, timeout: float) -> tuple[list[tuple[str, str]], AlertEvent | None]:
    """The next ``count`` events of ``subscription`` (waiting on each), and whatever else is already waiting."""
    events = [await subscription.next(timeout) for _ in range(count)]
    return [(item.conversation_id, item.kind) for item in events if item is not None], await subscription.next(0)


def test_subscribers_get_the_events_of_their_queue_and_team(event_timeout):
    hub = AlertHub(queue_size=10)

    async def main():
        everything = hub.subscribe()
        billing = hub.subscribe(EventFilter(queue="billing"))
        north_billing = hub.subscribe(EventFilter(queue="billing", team="north"))
        hub.publish(event("a", queue="billing", team="north"))
        hub.publish(event("b", queue="billing", team="south"))
        hub.publish(event("c", queue="tech"))
        hub.publish(event("a", kind="ended", queue="billing", team="north"))
        # Deliveries are scheduled on the loop; the first wait lets them all run. Nothing may be left after.
        return (
            await received(everything, 4, event_timeout),
            await received(billing, 3, event_timeout),
            await received(north_billing, 2, event_timeout),
        )

    everything, billing, north_billing = asyncio.run(main())
    assert everything == ([("a", "alert"), ("b", "alert"), ("c", "alert"), ("a", "ended")], None)
    assert billing == ([("a", "alert"), ("b", "alert"), ("a", "ended")], None)
    assert north_billing == ([("a", "alert"), ("a", "ended")], None)


def test_a_slow_subscriber_loses_its_oldest_events_not_the_servers_memory(event_timeout):
    hub = AlertHub(queue_size=3)

    async def main():
        subscription = hub.subscribe()
        for number in range(10):
            hub.publish(event(f"c{number}"))
        events, rest = await received(subscription, 3, event_timeout)
        return events, subscription.take_dropped(), rest

    events, dropped, rest = asyncio.run(main())
    assert events == [("c7", "alert"), ("c8", "alert"), ("c9", "alert")] and dropped == 7 and rest is None


def test_events_are_numbered_kept_and_replayed_after_an_id(event_timeout):
    hub = AlertHub(recent=3)
    published = [hub.publish(event(f"c{number}")) for number in range(5)]
    assert [item.id for item in published] == [1, 2, 3, 4, 5]
    assert [item.id for item in hub.recent()] == [3, 4, 5]
    assert [item.id for item in hub.recent(after_id=4)] == [5]

    async def main():
        subscription = hub.subscribe(after_id=3)
        first, second = await subscription.next(event_timeout), await subscription.next(event_timeout)
        rest = await subscription.next(0)
        subscription.close()
        return first.id, second.id, rest

    assert asyncio.run(main()) == (4, 5, None)
    assert hub.subscriber_count == 0


class WatchedSelector(selectors.DefaultSelector):
    """The event loop's selector, which says when the loop goes to sleep (a select that may block)."""

    def __init__(self):
        super().__init__()
        self.sleeping = threading.Event()

    def select(self, timeout=None):
        if timeout is None or timeout > 0:
            self.sleeping.set()
        return super().select(timeout)


def test_publishing_from_another_thread_wakes_the_sleeping_subscriber(event_timeout):
    hub = AlertHub()
    selector = WatchedSelector()
    loop = asyncio.SelectorEventLoop(selector)
    received = threading.Event()
    woken_by_the_event: list[bool] = []

    def publish_once_the_loop_sleeps():
        if not selector.sleeping.wait(event_timeout):
            return
        hub.publish(event("from-thread"))
        # Only a thread-safe hand-over wakes a loop asleep in select. Otherwise the subscriber would sleep
        # through its hour-long timeout: record that, and wake the loop so that the test ends.
        woken_by_the_event.append(received.wait(event_timeout))
        if not woken_by_the_event[0]:
            loop.call_soon_threadsafe(lambda: None)

    publisher = threading.Thread(target=publish_once_the_loop_sleeps)

    async def main():
        subscription = hub.subscribe()
        publisher.start()
        delivered = await subscription.next(3600)
        received.set()
        return delivered

    try:
        delivered = loop.run_until_complete(main())
    finally:
        loop.close()
    publisher.join()
    assert woken_by_the_event == [True]
    assert delivered is not None and delivered.conversation_id == "from-thread"


def parse_sse(text: str) -> list[dict]:
    """The ``event:`` / ``data:`` records of an SSE body (comments skipped)."""
    records = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            records.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return records


def read_until_keep_alives(lines, count: int) -> list[str]:
    """Lines of an open stream up to its ``count``-th keep-alive comment (fails if the stream ends first)."""
    read: list[str] = []
    while read.count(": keep-alive") < count:
        line = next(lines, None)
        assert line is not None, f"the stream ended early after {read}"
        read.append(line)
    return read


def test_the_stream_sends_live_events_filtered_by_queue(scripted, event_timeout):
    app = create_app(ServeConfig(sse_keepalive_s=0.05), classifier=scripted)
    hub = app.state.server.hub
    with TestClient(app, base_url="http://localhost") as client:
        # `timeout` only keeps a broken stream from hanging the test; max_events=1 is what should end it.
        params = {"queue": "billing", "max_events": 1, "timeout": event_timeout}
        with client.stream("GET", "/v1/alerts/stream", params=params) as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 3000"  # the stream has subscribed before it sends anything
            # Another queue's alert first: the filtered stream must skip it.
            for conversation_id, queue in (("other", "tech"), ("mine", "billing")):
                turn = client.post(
                    f"/v1/conversations/{conversation_id}/turns",
                    json={"speaker": "customer", "text": "[abusive 0.9] x", "queue": queue},
                )
                assert turn.json()["alert"]["conversation_id"] == conversation_id
            text = "\n".join(["retry: 3000", *lines])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    records = parse_sse(text)
    assert [(record["event"], record["data"]["conversation_id"]) for record in records] == [("alert", "mine")]
    alert = records[0]["data"]
    assert alert["reason"] == "abusive" and alert["text"] == "[abusive 0.9] x" and alert["id"] == records[0]["id"]
    assert hub.subscriber_count == 0  # the stream's subscription is gone with it


def test_the_stream_replays_missed_events_sends_keep_alives_and_ends_when_its_time_is_up(scripted, fake_clock):
    # The stream's duration runs on the server's (fake) clock; keep-alives come every 0.01 s of real time.
    app = create_app(ServeConfig(sse_keepalive_s=0.01), classifier=scripted, clock=fake_clock)
    with TestClient(app, base_url="http://localhost") as client:
        for text in ("[angry 0.9] a", "[calm 0.1] b", "[calm 0.1] c"):
            client.post("/v1/conversations/r/turns", json={"speaker": "customer", "text": text})
        client.delete("/v1/conversations/r")
        first = client.get("/v1/alerts").json()["events"][0]["id"]
        headers = {"Last-Event-ID": str(first)}
        with client.stream("GET", "/v1/alerts/stream", params={"timeout": 60}, headers=headers) as response:
            lines = response.iter_lines()
            # The missed events first, then keep-alives while the stream stays open.
            replayed = parse_sse("\n".join(read_until_keep_alives(lines, 2)))
            fake_clock.advance(59)
            read_until_keep_alives(lines, 2)  # a second of its minute left: still open
            fake_clock.advance(1)
            # Time is up: at most the keep-alive already on its way, then the end (20 lines: it went on).
            after = [line for line in itertools.islice(lines, 20) if line]
    assert [(record["id"], record["event"]) for record in replayed] == [(first + 1, "all_clear"), (first + 2, "ended")]
    assert after in ([], [": keep-alive"])


def test_event_ids_keep_growing_across_a_restart_of_a_server_that_keeps_state_in_memory(scripted):
    wall = {"now": 1_790_000_000.0}
    ids = []
    for _ in range(2):  # the second app is the first one restarted, a second later
        app = create_app(ServeConfig(), classifier=scripted, wall_clock=lambda: wall["now"])
        with TestClient(app, base_url="http://localhost") as client:
            for number in range(3):
                client.post(f"/v1/conversations/c{number}/turns", json={"speaker": "customer", "text": "[abusive 0.9]"})
            ids.append([event["id"] for event in client.get("/v1/alerts").json()["events"]])
        wall["now"] += 1.0
    assert ids[0] == sorted(ids[0]) and min(ids[1]) > max(ids[0])  # a dashboard never takes one for a seen one
    assert max(ids[1]) < 2**53  # exact in JavaScript


def test_a_stopping_server_ends_its_in_memory_conversations_on_the_stream_and_ends_the_stream(
    make_scripted, live_server
):
    import httpx

    app = create_app(ServeConfig(sse_keepalive_s=0.05), classifier=make_scripted())
    with live_server(app) as server, httpx.stream("GET", f"{server.url}/v1/alerts/stream", timeout=30) as response:
        lines = response.iter_lines()
        assert next(lines) == "retry: 3000"
        turn = {"speaker": "customer", "text": "[abusive 0.9] x"}
        assert httpx.post(f"{server.url}/v1/conversations/c1/turns", json=turn).status_code == 200
        server.server.should_exit = True  # what SIGTERM does
        text = "\n".join(lines)  # ends: the server ended the stream
    records = parse_sse(text)
    assert [(record["event"], record["data"]["reason"]) for record in records] == [
        ("alert", "abusive"),
        ("ended", "shutdown"),
    ]
    assert ": the server is stopping; reconnect with Last-Event-ID" in text
