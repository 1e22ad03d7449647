"""The alert hub (pub/sub with filters and bounded buffers) and the SSE stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time

from fastapi.testclient import TestClient

from tonewatch.serve.alerts import AlertHub, EventFilter
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig
from tonewatch.tracking import AlertEvent


def event(conversation_id: str, kind: str = "alert", queue: str | None = None, team: str | None = None):
    return AlertEvent(kind=kind, conversation_id=conversation_id, reason="escalation", queue=queue, team=team)


def test_subscribers_get_the_events_of_their_queue_and_team():
    hub = AlertHub(queue_size=10)

    async def main():
        everything = hub.subscribe()
        billing = hub.subscribe(EventFilter(queue="billing"))
        north_billing = hub.subscribe(EventFilter(queue="billing", team="north"))
        hub.publish(event("a", queue="billing", team="north"))
        hub.publish(event("b", queue="billing", team="south"))
        hub.publish(event("c", queue="tech"))
        hub.publish(event("a", kind="ended", queue="billing", team="north"))
        await asyncio.sleep(0)  # deliveries are scheduled on the loop

        async def drain(subscription):
            received = []
            while (item := await subscription.next(0.01)) is not None:
                received.append((item.conversation_id, item.kind))
            return received

        return await drain(everything), await drain(billing), await drain(north_billing)

    everything, billing, north_billing = asyncio.run(main())
    assert everything == [("a", "alert"), ("b", "alert"), ("c", "alert"), ("a", "ended")]
    assert billing == [("a", "alert"), ("b", "alert"), ("a", "ended")]
    assert north_billing == [("a", "alert"), ("a", "ended")]


def test_a_slow_subscriber_loses_its_oldest_events_not_the_servers_memory():
    hub = AlertHub(queue_size=3)

    async def main():
        subscription = hub.subscribe()
        for number in range(10):
            hub.publish(event(f"c{number}"))
        await asyncio.sleep(0)
        received = [(await subscription.next(0.01)).conversation_id for _ in range(3)]
        return received, subscription.take_dropped(), await subscription.next(0.01)

    received, dropped, nothing = asyncio.run(main())
    assert received == ["c7", "c8", "c9"] and dropped == 7 and nothing is None


def test_events_are_numbered_kept_and_replayed_after_an_id():
    hub = AlertHub(recent=3)
    published = [hub.publish(event(f"c{number}")) for number in range(5)]
    assert [item.id for item in published] == [1, 2, 3, 4, 5]
    assert [item.id for item in hub.recent()] == [3, 4, 5]
    assert [item.id for item in hub.recent(after_id=4)] == [5]

    async def main():
        subscription = hub.subscribe(after_id=3)
        await asyncio.sleep(0)
        first, second = await subscription.next(0.01), await subscription.next(0.01)
        subscription.close()
        return first.id, second.id

    assert asyncio.run(main()) == (4, 5)
    assert hub.subscriber_count == 0


def test_publishing_from_another_thread_wakes_the_subscriber():
    hub = AlertHub()

    async def main():
        subscription = hub.subscribe()
        threading.Timer(0.05, hub.publish, args=(event("from-thread"),)).start()
        return await subscription.next(5)

    assert asyncio.run(main()).conversation_id == "from-thread"


def parse_sse(text: str) -> list[dict]:
    """The ``event:`` / ``data:`` records of an SSE body (comments skipped)."""
    records = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if "event" in fields:
            records.append({"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])})
    return records


def test_the_stream_sends_live_events_filtered_by_queue(scripted):
    app = create_app(ServeConfig(sse_keepalive_s=0.05), classifier=scripted)
    hub = app.state.server.hub
    with TestClient(app) as client:

        def post_when_subscribed():
            deadline = time.monotonic() + 5
            while hub.subscriber_count == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            # Another queue's alert first: the filtered stream must skip it.
            for conversation_id, queue in (("other", "tech"), ("mine", "billing")):
                client.post(
                    f"/v1/conversations/{conversation_id}/turns",
                    json={"speaker": "customer", "text": "[abusive 0.9] x", "queue": queue},
                )

        poster = threading.Thread(target=post_when_subscribed)
        poster.start()
        response = client.get("/v1/alerts/stream", params={"queue": "billing", "max_events": 1, "timeout": 10})
        poster.join()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.text.startswith("retry: 3000\n")
    records = parse_sse(response.text)
    assert [(record["event"], record["data"]["conversation_id"]) for record in records] == [("alert", "mine")]
    alert = records[0]["data"]
    assert alert["reason"] == "abusive" and alert["text"] == "[abusive 0.9] x" and alert["id"] == records[0]["id"]
    assert hub.subscriber_count == 0  # the stream's subscription is gone with it


def test_the_stream_replays_missed_events_sends_keep_alives_and_ends_on_timeout(scripted):
    with TestClient(create_app(ServeConfig(sse_keepalive_s=0.05), classifier=scripted)) as client:
        for text in ("[angry 0.9] a", "[calm 0.1] b", "[calm 0.1] c"):
            client.post("/v1/conversations/r/turns", json={"speaker": "customer", "text": text})
        client.delete("/v1/conversations/r")
        started = time.monotonic()
        response = client.get("/v1/alerts/stream", params={"timeout": 0.3}, headers={"Last-Event-ID": "1"})
        elapsed = time.monotonic() - started
    records = parse_sse(response.text)
    assert [(record["id"], record["event"]) for record in records] == [(2, "all_clear"), (3, "ended")]
    assert ": keep-alive" in response.text
    assert 0.25 < elapsed < 5
