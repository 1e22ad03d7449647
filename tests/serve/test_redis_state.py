"""Live conversations and alerts in a real Redis: shared by server processes, kept across restarts of the
server and of Redis, refused with a typed 503 while Redis is away."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from fastapi.testclient import TestClient as _TestClient

from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig

KEY_A = "telephony-key-aaaaaaaa"
KEY_B = "chat-widget-key-bbbbbbbb"


def TestClient(app):
    """The test client, as a local client: a server without keys answers localhost only."""
    return _TestClient(app, base_url="http://localhost")


def app_for(redis_server, classifier, **settings):
    return create_app(ServeConfig(state=redis_server.url, sse_keepalive_s=0.05, **settings), classifier=classifier)


def post(client, conversation_id, text, speaker="customer", expect=200, **fields):
    response = client.post(
        f"/v1/conversations/{conversation_id}/turns", json={"speaker": speaker, "text": text, **fields}
    )
    assert response.status_code == expect, response.text
    return response.json()


def parse_sse(lines) -> list[dict]:
    records, record = [], {}
    for line in lines:
        if not line:
            if "data" in record:
                records.append({**record, "data": json.loads(record["data"])})
            record = {}
        elif not line.startswith(":") and ":" in line:
            field, _, value = line.partition(":")
            record[field] = value.strip()
    return records


def test_a_conversation_continues_on_another_process_with_its_context_language_and_queue(redis_server, make_scripted):
    first, second = make_scripted(), make_scripted()
    with TestClient(app_for(redis_server, first)) as a, TestClient(app_for(redis_server, second)) as b:
        post(a, "c1", "我的快递还没到", lang="zh", queue="billing", team="north")
        post(b, "c1", "我们正在查询", speaker="agent")
        turn = post(b, "c1", "[angry 0.7] 还没好吗")
        state = turn["state"]
        assert (state["turns"], state["customer_turns"], state["lang"], state["queue"]) == (3, 2, "zh", "billing")
        # The second process classified its turn with the first process's turns as context, in zh.
        (sent,) = second.calls[-1]
        assert sent.context == (("customer", "我的快递还没到"), ("agent", "我们正在查询")) and sent.lang == "zh"
        assert a.get("/v1/conversations/c1").json()["state"] == state
        listed = a.get("/v1/conversations", params={"queue": "billing"}).json()
        assert listed["count"] == 1 and listed["conversations"][0]["turns"] == 3


def test_an_alert_raised_on_one_process_reaches_the_streams_of_every_process(
    redis_server, make_scripted, event_timeout
):
    with TestClient(app_for(redis_server, make_scripted())) as a, TestClient(
        app_for(redis_server, make_scripted())
    ) as b:
        params = {"max_events": 2, "timeout": event_timeout}
        with b.stream("GET", "/v1/alerts/stream", params=params) as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 3000"  # subscribed
            alert = post(a, "c1", "[abusive 0.9] 滚", queue="billing")["alert"]
            ended = a.delete("/v1/conversations/c1").json()["ended"]
            records = parse_sse(lines)
        assert [record["event"] for record in records] == ["alert", "ended"]
        assert [int(record["id"]) for record in records] == [alert["id"], ended["id"]]
        assert ended["id"] > alert["id"] > 0
        assert records[0]["data"] == alert
        # Both processes keep the same recent events, with the same ids.
        assert a.get("/v1/alerts").json()["events"][-2:] == b.get("/v1/alerts").json()["events"][-2:]


def test_a_restarted_server_continues_every_conversation_with_its_active_alert(redis_server, make_scripted):
    config = {"state": redis_server.url}
    with TestClient(create_app(ServeConfig(**config), classifier=make_scripted())) as before:
        raised = post(before, "c1", "[abusive 0.9] ты идиот", lang="ru", queue="vip")
        assert raised["alert"]["reason"] == "abusive"
        state_before = before.get("/v1/conversations/c1").json()["state"]
    classifier = make_scripted()
    with TestClient(create_app(ServeConfig(**config), classifier=classifier)) as after:
        assert after.get("/v1/conversations/c1").json()["state"] == state_before
        turn = post(after, "c1", "[calm 0.1] ладно")
        assert turn["state"]["alert_active"] and turn["state"]["last_alert"]["id"] == raised["alert"]["id"]
        assert turn["state"]["turns"] == 2 and turn["state"]["lang"] == "ru" and turn["state"]["queue"] == "vip"
        assert classifier.calls[-1][0].context == (("customer", "[abusive 0.9] ты идиот"),)
        assert classifier.calls[-1][0].lang == "ru"
        # The alert history survived the restart too.
        assert raised["alert"] in after.get("/v1/alerts").json()["events"]


def test_while_redis_is_away_turns_get_a_typed_503_texts_are_classified_and_it_recovers_by_itself(
    redis_server, make_scripted, event_timeout
):
    with TestClient(app_for(redis_server, make_scripted())) as client:
        acknowledged = [post(client, "c1", f"[frustrated 0.3] turn {number}")["state"]["turns"] for number in range(3)]
        assert acknowledged == [1, 2, 3]
        assert client.get("/readyz").status_code == 200
        redis_server.kill()

        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error_type"] == "state_unavailable"
        refused = client.post("/v1/conversations/c1/turns", json={"speaker": "customer", "text": "hello"})
        assert refused.status_code == 503 and refused.json()["error_type"] == "state_unavailable"
        assert refused.headers["retry-after"] == "1"
        assert client.get("/v1/conversations/c1").status_code == 503
        classified = client.post("/v1/classify", json={"texts": ["你好", "[angry 0.8] ужас"]})
        assert classified.status_code == 200 and len(classified.json()["texts"]) == 2

        redis_server.start()  # same port and append-only file
        for _ in range(int(event_timeout / 0.05)):  # the server notices by itself
            if client.get("/readyz").status_code == 200:
                break
            threading.Event().wait(0.05)
        assert client.get("/readyz").status_code == 200
        state = client.get("/v1/conversations/c1").json()["state"]
        assert state["turns"] == 3  # every acknowledged turn is there
        assert post(client, "c1", "[calm 0.1] ok")["state"]["turns"] == 4


def test_capacity_is_shared_by_processes_and_limited_per_key_with_a_retry_after_from_the_idle_timeout(
    redis_server, make_scripted
):
    keys = [{"name": "telephony", "key": KEY_A, "scopes": ["write", "read"]}]
    keys.append({"name": "chat", "key": KEY_B, "scopes": ["write", "read"]})
    settings = {"max_conversations": 3, "max_conversations_per_key": 2, "idle_timeout_s": 600, "api_keys": keys}
    with TestClient(app_for(redis_server, make_scripted(), **settings)) as a, TestClient(
        app_for(redis_server, make_scripted(), **settings)
    ) as b:
        a.headers["Authorization"] = f"Bearer {KEY_A}"
        b.headers["Authorization"] = f"Bearer {KEY_B}"
        post(a, "a1", "one")
        post(a, "a2", "two")
        refused = post(a, "a3", "three", expect=503)
        assert refused["error_type"] == "capacity_exceeded" and "telephony" in refused["error"]
        post(b, "b1", "another key still gets in")
        full = b.post("/v1/conversations/b2/turns", json={"speaker": "customer", "text": "x"})
        assert full.status_code == 503 and full.json()["error_type"] == "capacity_exceeded"
        # The first slot frees when a1 has been idle for 600 s: Retry-After says about that, not 5.
        assert 590 <= int(full.headers["retry-after"]) <= 600
        info = b.get("/v1/info").json()
        assert info["state"] == "redis" and info["limits"]["max_conversations_per_key"] == 2
        post(b, "a1", "a turn of a live conversation is never refused")
        assert a.delete("/v1/conversations/a2").status_code == 200
        post(b, "b2", "a slot is free again")


def test_idle_conversations_expire_once_whichever_process_sweeps(redis_server, make_scripted, event_timeout):
    clock = {"now": 1_000_000.0}

    def wall_clock() -> float:
        return clock["now"]

    apps = [
        create_app(
            ServeConfig(state=redis_server.url, idle_timeout_s=60, sweep_interval_s=3600),
            classifier=make_scripted(),
            wall_clock=wall_clock,
        )
        for _ in range(2)
    ]
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        post(a, "old", "[angry 0.8] still waiting")
        clock["now"] += 30
        post(b, "recent", "hello")
        clock["now"] += 40  # "old" idle for 70 s, "recent" for 40 s

        async def sweep(app):
            return await app.state.server.store.expire_idle()

        assert a.portal.call(sweep, apps[0]) == ["old"]
        assert b.portal.call(sweep, apps[1]) == []  # already ended, by the other process
        assert a.get("/v1/conversations/old").status_code == 404
        assert b.get("/v1/conversations/recent").status_code == 200
        events = [event for event in b.get("/v1/alerts").json()["events"] if event["kind"] == "ended"]
        for _ in range(int(event_timeout / 0.05)):  # b reads the stream that a wrote to
            if events:
                break
            threading.Event().wait(0.05)
            events = [event for event in b.get("/v1/alerts").json()["events"] if event["kind"] == "ended"]
        assert [(event["conversation_id"], event["reason"]) for event in events] == [("old", "expired")]


def test_turns_of_one_conversation_sent_to_two_processes_at_once_are_all_kept(redis_server, make_scripted):
    with TestClient(app_for(redis_server, make_scripted())) as a, TestClient(
        app_for(redis_server, make_scripted())
    ) as b:
        errors: list[str] = []

        def send(client, name: str) -> None:
            for number in range(15):
                response = client.post(
                    "/v1/conversations/shared/turns", json={"speaker": "customer", "text": f"{name} {number}"}
                )
                if response.status_code != 200:
                    errors.append(response.text)

        threads = [threading.Thread(target=send, args=(client, name)) for client, name in ((a, "a"), (b, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        state = a.get("/v1/conversations/shared").json()["state"]
        assert state["turns"] == 30 and state["customer_turns"] == 30  # no turn lost to a concurrent write


@pytest.mark.parametrize("value", ["redis:/nope", "postgres://db", ""])
def test_state_must_be_memory_or_a_redis_url(value):
    with pytest.raises(ValueError, match="state must be memory or a Redis URL"):
        ServeConfig(state=value)


def test_the_state_url_password_is_redacted():
    config = ServeConfig(state="redis://:s3cret@cache.internal:6379/2")
    assert config.to_dict()["state"] == "redis://:***@cache.internal:6379/2"
    assert config.to_dict(redact=False)["state"] == "redis://:s3cret@cache.internal:6379/2"


class ServeProcess:
    """``tonewatch serve`` as its own process (the tiny model, PyTorch), on a free loopback port."""

    def __init__(self, model_dir, state: str):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.command = [sys.executable, "-m", "tonewatch", "serve", "--model", str(model_dir), "--backend", "torch"]
        self.command += ["--port", str(self.port), "--state", state]
        self.process = None

    def start(self, timeout: float = 120.0) -> ServeProcess:
        import httpx

        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        # Waits until it answers ready (an event), bounded: importing torch and loading the model takes seconds.
        for _ in range(int(timeout / 0.1)):
            if self.process.poll() is not None:
                raise RuntimeError(f"tonewatch serve exited: {self.process.stderr.read()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            threading.Event().wait(0.1)
        raise RuntimeError("tonewatch serve did not get ready")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # SIGKILL: a crash, not a graceful shutdown
            self.process.wait()
            self.process = None


def test_a_killed_tonewatch_process_is_restarted_and_continues_the_conversation(redis_server, tiny_model_dir):
    import httpx

    server = ServeProcess(tiny_model_dir, redis_server.url).start()
    try:
        for speaker, text in (("customer", "Почему мне до сих пор не вернули деньги?"), ("agent", "Проверяю.")):
            response = httpx.post(
                f"{server.url}/v1/conversations/c1/turns",
                json={"speaker": speaker, "text": text, "lang": "ru", "queue": "refunds"},
            )
            assert response.status_code == 200, response.text
        before = httpx.get(f"{server.url}/v1/conversations/c1").json()["state"]
        server.kill()
        server.start()
        assert httpx.get(f"{server.url}/v1/conversations/c1").json()["state"] == before
        response = httpx.post(
            f"{server.url}/v1/conversations/c1/turns", json={"speaker": "customer", "text": "Сколько можно ждать?"}
        )
        state = response.json()["state"]
        assert (state["turns"], state["customer_turns"], state["lang"], state["queue"]) == (3, 2, "ru", "refunds")
        assert [turn["index"] for turn in state["recent_turns"]] == [0, 1, 2]
    finally:
        server.kill()
