"""HTTP API: every endpoint and every error path, with `TestClient(create_app(config))`."""

from __future__ import annotations

import json
import threading

import pytest
from fastapi.testclient import TestClient

from tonewatch.labels import EMOTION_LABELS
from tonewatch.model.classifier import Classifier
from tonewatch.model.types import TurnInput
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig

CONVERSATION = {
    "id": "ru-1",
    "lang": "ru",
    "channel": "chat",
    "turns": [
        {"speaker": "agent", "text": "Здравствуйте, чем могу помочь?"},
        {"speaker": "customer", "text": "Опять не работает интернет"},
        {"speaker": "agent", "text": "Сейчас проверю"},
        {"speaker": "customer", "text": "Позовите руководителя!", "emotion": "angry"},
    ],
}


def make_client(classifier, **settings) -> TestClient:
    return TestClient(create_app(ServeConfig(**settings), classifier=classifier), base_url="http://localhost")


@pytest.fixture
def client(scripted):
    with make_client(scripted, alert={"cooldown_seconds": 0.0}) as test_client:
        yield test_client


def post_turn(client, conversation_id, text, speaker="customer", **fields):
    response = client.post(
        f"/v1/conversations/{conversation_id}/turns", json={"speaker": speaker, "text": text, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def assert_error(response, status: int, error_type: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_type"} and body["error_type"] == error_type and body["error"]
    return body


# -- the real (tiny) model --------------------------------------------------------------------------------------


def test_classify_texts_with_the_tiny_model_has_the_shape_tonewatch_label_writes(tiny_classifier):
    with make_client(tiny_classifier) as client:
        response = client.post("/v1/classify", json={"texts": ["你好 请问", "опять не работает!!!"], "lang": "ru"})
    assert response.status_code == 200, response.text
    records = response.json()["texts"]
    assert [record["text"] for record in records] == ["你好 请问", "опять не работает!!!"]
    direct = tiny_classifier.classify(["你好 请问"])[0].to_dict()
    first = records[0]["prediction"]
    assert set(first) == {"emotion", "scores", "escalate", "escalate_score", "escalation"}
    assert set(first["escalation"]) == {"escalate", "score", "reasons", "since_turn"}
    assert set(first["scores"]) == set(EMOTION_LABELS)
    assert first["scores"] == pytest.approx(direct["scores"], abs=1e-5)


def test_classify_conversations_with_the_tiny_model_keeps_every_field(tiny_classifier):
    with make_client(tiny_classifier) as client:
        response = client.post("/v1/classify", json={"conversations": [CONVERSATION]})
    assert response.status_code == 200, response.text
    (labelled,) = response.json()["conversations"]
    assert labelled["id"] == "ru-1" and labelled["channel"] == "chat"
    turns = labelled["turns"]
    assert [("prediction" in turn) for turn in turns] == [False, True, False, True]
    assert turns[3]["emotion"] == "angry"  # gold labels are kept untouched
    expected = [p.to_dict() for p in tiny_classifier.classify_conversation(CONVERSATION)]
    assert turns[3]["prediction"]["scores"] == pytest.approx(expected[1]["scores"], abs=1e-5)


def test_live_turns_with_the_tiny_model(tiny_classifier):
    with make_client(tiny_classifier) as client:
        assert post_turn(client, "z", "您好", speaker="agent", lang="zh")["prediction"] is None
        body = post_turn(client, "z", "又断网了!!!")
    # The conversation's language and its agent turn reach the model as the turn's context.
    direct = tiny_classifier.classify([TurnInput("又断网了!!!", (("agent", "您好"),), "zh")])[0].to_dict()
    assert body["prediction"]["emotion"] == direct["emotion"]
    assert body["prediction"]["scores"] == pytest.approx(direct["scores"], abs=1e-5)
    assert body["state"]["lang"] == "zh" and body["state"]["customer_turns"] == 1


def test_a_long_text_is_read_whole_and_says_in_how_many_windows(tiny_classifier):
    long_text = " ".join(f"слово{number}" for number in range(12))  # beyond the tiny model's 24 tokens
    windows = tiny_classifier.window_count(long_text)
    assert windows > 1
    with make_client(tiny_classifier) as client:
        response = client.post("/v1/classify", json={"texts": [long_text, "你好 请问"]})
        live = post_turn(client, "long", long_text)
    assert response.status_code == 200, response.text
    texts = response.json()["texts"]
    assert texts[0]["prediction"]["windows"] == windows and "windows" not in texts[1]["prediction"]
    assert live["prediction"]["windows"] == windows
    direct = tiny_classifier.classify([long_text])[0].to_dict()
    assert texts[0]["prediction"]["scores"] == pytest.approx(direct["scores"], abs=1e-5)


# -- live conversations ----------------------------------------------------------------------------------------


def test_an_escalating_conversation_raises_one_alert_then_all_clear(client, scripted):
    assert post_turn(client, "c1", "Hello", speaker="agent", queue="billing", team="north")["prediction"] is None
    first = post_turn(client, "c1", "I want to check my bill")
    assert first["alert"] is None and first["prediction"]["emotion"] == "calm"
    assert first["state"]["queue"] == "billing" and first["state"]["team"] == "north"
    raised = post_turn(client, "c1", "[angry 0.8] This is the third time!")
    alert = raised["alert"]
    assert alert["kind"] == "alert" and alert["reason"] == "escalation" and alert["label"] == "angry"
    assert alert["score"] == 0.8 and alert["turn_index"] == 2 and alert["text"] == "[angry 0.8] This is the third time!"
    assert alert["queue"] == "billing" and raised["state"]["alert_active"]
    assert alert["id"] >= 1 and raised["state"]["last_alert"] == alert  # the published (numbered) alert
    assert post_turn(client, "c1", "[angry 0.9] Get me your manager")["alert"] is None  # same episode
    post_turn(client, "c1", "[calm 0.1] ok")
    cleared = post_turn(client, "c1", "[calm 0.1] thank you")
    assert cleared["alert"] is None and cleared["event"]["kind"] == "all_clear"
    assert not cleared["state"]["alert_active"] and cleared["state"]["alerts_raised"] == 1
    # The model saw the earlier turns as context, capped to what it reads (3 turns).
    assert scripted.calls[-1][0].context == (
        ("customer", "[angry 0.8] This is the third time!"),
        ("customer", "[angry 0.9] Get me your manager"),
        ("customer", "[calm 0.1] ok"),
    )


def test_an_agent_turn_costs_no_model_call_and_is_the_next_customer_turns_context(client, scripted):
    post_turn(client, "j1", "Здравствуйте", speaker="agent", lang="ru")
    assert scripted.calls == []  # an agent turn is not classified: it waits as context
    post_turn(client, "j1", "Опять не работает")
    assert scripted.calls == [[TurnInput("Опять не работает", (("agent", "Здравствуйте"),), "ru")]]


def test_without_lang_a_turn_gets_its_scripts_threshold_on_every_endpoint(client, scripted):
    # The scripted model's escalation thresholds: zh 0.6, any other language 0.5. The fallback would escalate this.
    text = "[frustrated 0.55] 如果今天不给我退款，我就去消协投诉"
    unsaid = post_turn(client, "unsaid", text)
    assert scripted.calls[-1][0].lang == "zh"
    given = post_turn(client, "given", text, lang="zh")
    assert unsaid["prediction"] == given["prediction"] and not unsaid["prediction"]["escalate"]
    assert unsaid["alert"] is None and given["alert"] is None
    (classified,) = client.post("/v1/classify", json={"texts": [text]}).json()["texts"]
    assert not classified["prediction"]["escalate"] and not classified["prediction"]["escalation"]["escalate"]


def test_classify_applies_the_requests_lang_to_conversations_without_their_own(client, scripted):
    scriptless = {"id": "a", "turns": [{"speaker": "customer", "text": "[frustrated 0.55] OK!!!"}]}
    own = {**scriptless, "id": "b", "lang": "ru"}
    body = client.post("/v1/classify", json={"conversations": [scriptless, own], "lang": "zh"}).json()
    first, second = body["conversations"]
    assert [turn.lang for turn in scripted.calls[-1]] == ["zh", "ru"]
    assert not first["turns"][0]["prediction"]["escalate"]  # the request's zh: 0.6
    assert not first["turns"][0]["prediction"]["escalation"]["escalate"]
    assert second["turns"][0]["prediction"]["escalate"]  # its own ru: 0.5
    assert "lang" not in first and second["lang"] == "ru"  # each conversation is answered as sent
    (alone,) = client.post("/v1/classify", json={"conversations": [scriptless]}).json()["conversations"]
    assert alone["turns"][0]["prediction"]["escalate"]  # no language at all: the fallback threshold


def test_abusive_turn_alerts_immediately(client):
    body = post_turn(client, "c2", "[abusive 0.2] you idiot")
    assert body["alert"]["reason"] == "abusive" and body["alert"]["label"] == "abusive"


def test_get_list_and_delete_conversations(client):
    post_turn(client, "calm-one", "hello")
    post_turn(client, "risky", "[angry 0.9] now!", queue="vip")
    post_turn(client, "middle", "[frustrated 0.3] again?", queue="vip")
    listed = client.get("/v1/conversations").json()
    assert listed["count"] == 3
    assert [state["conversation_id"] for state in listed["conversations"]] == ["risky", "middle", "calm-one"]
    vip = client.get("/v1/conversations", params={"queue": "vip"}).json()
    assert [state["conversation_id"] for state in vip["conversations"]] == ["risky", "middle"]
    state = client.get("/v1/conversations/risky").json()["state"]
    assert state["current_label"] == "angry" and state["recent_turns"][0]["text"] == "[angry 0.9] now!"
    ended = client.delete("/v1/conversations/risky")
    assert ended.status_code == 200
    assert ended.json()["ended"]["kind"] == "ended" and ended.json()["ended"]["reason"] == "deleted"
    assert_error(client.get("/v1/conversations/risky"), 404, "unknown_conversation")
    assert_error(client.delete("/v1/conversations/risky"), 404, "unknown_conversation")
    events = client.get("/v1/alerts").json()["events"]
    assert [(event["kind"], event["conversation_id"]) for event in events] == [("alert", "risky"), ("ended", "risky")]
    assert events[1]["id"] > events[0]["id"]


def test_idle_conversations_expire_and_publish_an_ended_event(scripted, fake_clock):
    config = ServeConfig(idle_timeout_s=60, sweep_interval_s=1)
    with TestClient(create_app(config, classifier=scripted, clock=fake_clock), base_url="http://localhost") as client:
        post_turn(client, "old", "[angry 0.9] hello?")
        fake_clock.advance(30)
        post_turn(client, "young", "hi")
        fake_clock.advance(31)  # "old" idle for 61 s, "young" for 31 s
        assert [state["conversation_id"] for state in client.get("/v1/conversations").json()["conversations"]] == [
            "young"
        ]
        assert_error(client.get("/v1/conversations/old"), 404, "unknown_conversation")
        ended = [event for event in client.get("/v1/alerts").json()["events"] if event["kind"] == "ended"]
        assert [(event["conversation_id"], event["reason"], event["alerts_raised"]) for event in ended] == [
            ("old", "expired", 1)
        ]
        # A new turn keeps a conversation alive; an expired id starts afresh.
        fake_clock.advance(50)
        post_turn(client, "young", "still here")
        fake_clock.advance(50)
        assert client.get("/v1/conversations/young").status_code == 200
        assert post_turn(client, "old", "back again")["state"]["turns"] == 1


def test_capacity_is_bounded(scripted):
    with make_client(scripted, max_conversations=2) as client:
        post_turn(client, "a", "hi")
        post_turn(client, "b", "hi")
        body = assert_error(
            client.post("/v1/conversations/c/turns", json={"speaker": "customer", "text": "hi"}),
            503,
            "capacity_exceeded",
        )
        assert "2 live conversations" in body["error"]
        post_turn(client, "a", "existing conversations still take turns")


def test_one_key_cannot_take_every_slot_and_retry_after_says_when_one_frees(scripted, fake_clock):
    keys = [
        {"name": "telephony", "key": "telephony-key-aaaaaaaa", "scopes": ["write"]},
        {"name": "chat", "key": "chat-widget-key-bbbbbbbb", "scopes": ["write"]},
    ]
    settings = {"max_conversations": 3, "max_conversations_per_key": 2, "idle_timeout_s": 900, "api_keys": keys}
    app = create_app(ServeConfig(**settings), classifier=scripted, clock=fake_clock)
    with TestClient(app, base_url="http://localhost") as client:
        telephony = {"Authorization": "Bearer telephony-key-aaaaaaaa"}
        chat = {"Authorization": "Bearer chat-widget-key-bbbbbbbb"}
        turn = {"speaker": "customer", "text": "hi"}
        assert client.post("/v1/conversations/t1/turns", json=turn, headers=telephony).status_code == 200
        fake_clock.advance(100)
        assert client.post("/v1/conversations/t2/turns", json=turn, headers=telephony).status_code == 200
        refused = client.post("/v1/conversations/t3/turns", json=turn, headers=telephony)
        body = assert_error(refused, 503, "capacity_exceeded")
        assert "'telephony' holds 2 live conversations" in body["error"]
        assert refused.headers["retry-after"] == "800"  # t1 expires 900 s after its turn, 100 s ago
        assert client.post("/v1/conversations/c1/turns", json=turn, headers=chat).status_code == 200
        full = client.post("/v1/conversations/c2/turns", json=turn, headers=chat)
        assert_error(full, 503, "capacity_exceeded")
        assert full.headers["retry-after"] == "800"


def test_alert_text_can_be_left_out_of_the_api(scripted):
    with make_client(scripted, alert_text=False) as client:
        body = post_turn(client, "c", "[abusive 0.9] secret words")
    assert body["alert"]["text"] is None and body["state"]["recent_turns"][0]["text"] is None


def test_transcripts_are_not_logged_unless_the_debug_flag_says_so(scripted, caplog):
    caplog.set_level("DEBUG", logger="tonewatch")
    with make_client(scripted) as client:
        post_turn(client, "c", "[abusive 0.9] very secret words")
        client.delete("/v1/conversations/c")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "alert conversation=c reason=abusive" in logged
    assert "very secret words" not in logged
    caplog.clear()
    with make_client(scripted, log_transcripts=True) as client:
        post_turn(client, "c", "[abusive 0.9] very secret words")
    assert "very secret words" in "\n".join(record.getMessage() for record in caplog.records)


# -- info, probes, metrics, dashboard --------------------------------------------------------------------------


def test_info_health_ready(client):
    info = client.get("/v1/info").json()
    assert info["model"] == {
        "name": "scripted",
        "version": "test",
        "base_model": "scripted",
        "max_context_turns": 3,
        "backend": "scripted",
        "signals": [],
        "signal_reader": None,
    }
    assert info["labels"] == list(EMOTION_LABELS)
    assert info["state"] == "memory" and info["limits"]["max_conversations_per_key"] is None  # no keys
    assert info["thresholds"]["escalation"] == {"default": 0.5, "per_language": {"zh": 0.6}}
    assert info["thresholds"]["alert"]["zh"] == {"raise": 0.6, "clear": 0.45}
    assert info["auth"] is False
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["ready"] is True


def test_readyz_is_503_until_the_model_is_loaded(tmp_path):
    app = create_app(ServeConfig(model_dir=str(tmp_path)))  # not a model directory: loading fails
    with TestClient(app, base_url="http://localhost") as client:
        app.state.server.load_model()  # what the startup thread does, here synchronously
        body = assert_error(client.get("/readyz"), 503, "not_ready")
        assert "no config.json" in body["error"]
        assert client.get("/healthz").status_code == 200
        assert_error(client.post("/v1/classify", json={"texts": ["a"]}), 503, "not_ready")
        assert_error(client.post("/v1/conversations/a/turns", json={"speaker": "agent", "text": "a"}), 503, "not_ready")


def test_metrics_count_requests_turns_and_alerts(client):
    post_turn(client, "m", "hello")
    post_turn(client, "m", "[abusive 0.9] x")
    client.post("/v1/classify", json={"texts": ["[angry 0.2] y"]})
    client.get("/v1/conversations/unknown")
    text = client.get("/metrics").text
    turns_route = 'route="/v1/conversations/{conversation_id}/turns"'
    assert f'tonewatch_http_requests_total{{method="POST",{turns_route},status="200"}} 2.0' in text
    get_route = 'route="/v1/conversations/{conversation_id}"'
    assert f'tonewatch_http_requests_total{{method="GET",{get_route},status="404"}} 1.0' in text
    assert 'tonewatch_turns_classified_total{endpoint="turns",label="abusive"} 1.0' in text
    assert 'tonewatch_turns_classified_total{endpoint="classify",label="angry"} 1.0' in text
    assert 'tonewatch_alert_events_total{kind="alert",reason="abusive"} 1.0' in text
    assert "tonewatch_http_request_duration_seconds_bucket" in text and "tonewatch_live_conversations 1.0" in text


def test_each_app_has_its_own_metrics_registry(scripted):
    with make_client(scripted) as first, make_client(scripted) as second:
        post_turn(first, "a", "hi")
        assert 'status="200"} 1.0' in first.get("/metrics").text
        assert "/v1/conversations/{conversation_id}/turns" not in second.get("/metrics").text


def test_dashboard_is_served_without_external_resources(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<ol id="conversations"' in page.text and '<ol id="alerts"' in page.text
    script = client.get("/static/dashboard.js")
    style = client.get("/static/dashboard.css")
    assert script.status_code == style.status_code == 200
    assert "EventSource" in script.text and "innerHTML" not in script.text
    for text in (page.text, script.text, style.text):
        assert "http://" not in text and "https://" not in text and "//cdn" not in text


# -- error paths: each a typed 4xx ------------------------------------------------------------------------------


TURNS = "/v1/conversations/c/turns"


@pytest.mark.parametrize(
    ("path", "body", "status", "error_type"),
    [
        (TURNS, {"speaker": "customer", "text": ""}, 422, "empty_text"),
        (TURNS, {"speaker": "customer", "text": "   \n "}, 422, "empty_text"),
        (TURNS, {"speaker": "customer", "text": "x" * 101}, 422, "text_too_long"),
        (TURNS, {"speaker": "supervisor", "text": "hi"}, 422, "unknown_speaker"),
        (TURNS, {"speaker": "customer", "text": "hi", "lang": "en"}, 422, "unknown_lang"),
        (TURNS, {"speaker": "customer", "text": 5}, 422, "validation_error"),
        (TURNS, {"speaker": "customer", "text": ["hi"]}, 422, "validation_error"),
        (TURNS, {"speaker": "customer"}, 422, "validation_error"),
        (TURNS, {"speaker": "customer", "text": "hi", "mood": "x"}, 422, "unknown_field"),
        (TURNS, {"speaker": "customer", "text": "hi", "queue": "q" * 101}, 422, "validation_error"),
        (TURNS, ["speaker", "customer"], 422, "validation_error"),
        (TURNS, "just a string", 422, "validation_error"),
        (TURNS, {"speaker": "customer", "text": "\ud800 lone surrogate"}, 422, "invalid_text"),
        (TURNS, {"speaker": "customer", "text": "hi", "queue": "\udfff"}, 422, "validation_error"),
        (TURNS, {"speaker": "customer", "text": "hi", "\ud800": 1}, 422, "validation_error"),
        # Nothing visible: zero-width space, joiners, BOM, NUL, other control and format characters.
        (TURNS, {"speaker": "customer", "text": "\u200b\u200d\ufeff"}, 422, "empty_text"),
        (TURNS, {"speaker": "customer", "text": "\x00"}, 422, "empty_text"),
        (TURNS, {"speaker": "customer", "text": " \x00\u2060\x07\u202e\n"}, 422, "empty_text"),
        (TURNS, {"speaker": "customer", "text": "hi\x00there"}, 422, "invalid_text"),
        # A line break (or anything unprintable) in a queue or team would forge alert log lines.
        (TURNS, {"speaker": "customer", "text": "hi", "queue": "billing\nalert conversation=x"}, 422, "invalid_text"),
        (TURNS, {"speaker": "customer", "text": "hi", "team": "north\r"}, 422, "invalid_text"),
        (TURNS, {"speaker": "customer", "text": "hi", "queue": "a\u2028b"}, 422, "invalid_text"),
        (TURNS, {"speaker": "customer", "text": "hi", "team": "\u202eevil"}, 422, "invalid_text"),
        (TURNS, {"speaker": "customer", "text": "hi", "team": "\x00"}, 422, "invalid_text"),
        ("/v1/classify", {}, 422, "invalid_request"),
        ("/v1/classify", {"texts": ["a"], "conversations": [CONVERSATION]}, 422, "invalid_request"),
        ("/v1/classify", {"texts": []}, 422, "empty_request"),
        ("/v1/classify", {"texts": ["a"] * 4}, 422, "too_many_items"),
        ("/v1/classify", {"texts": ["a", ""]}, 422, "empty_text"),
        ("/v1/classify", {"texts": ["a", "\u200b"]}, 422, "empty_text"),
        ("/v1/classify", {"texts": ["a\x00"]}, 422, "invalid_text"),
        (
            "/v1/classify",
            {"conversations": [{"id": "x", "turns": [{"speaker": "customer", "text": "\u200b\u200c"}]}]},
            422,
            "empty_text",
        ),
        ("/v1/classify", {"texts": ["a", "y" * 101]}, 422, "text_too_long"),
        ("/v1/classify", {"texts": ["a", 3]}, 422, "validation_error"),
        ("/v1/classify", {"texts": "a"}, 422, "validation_error"),
        ("/v1/classify", {"texts": ["a"], "lang": "de"}, 422, "unknown_lang"),
        ("/v1/classify", {"conversations": [{"id": "x", "turns": []}]}, 422, "invalid_conversation"),
        (
            "/v1/classify",
            {"conversations": [{"turns": [{"speaker": "agent", "text": "a"}]}]},
            422,
            "invalid_conversation",
        ),
        (
            "/v1/classify",
            {"conversations": [{"id": "x", "turns": [{"speaker": "boss", "text": "a"}]}]},
            422,
            "invalid_conversation",
        ),
        ("/v1/classify", {"conversations": [{"id": "x", "lang": "en", "turns": []}]}, 422, "invalid_conversation"),
        ("/v1/classify", {"conversations": ["not an object"]}, 422, "validation_error"),
        (
            "/v1/classify",
            {"conversations": [{"id": "\ud800", "turns": [{"speaker": "agent", "text": "a"}]}]},
            422,
            "invalid_text",
        ),
        (
            "/v1/classify",
            {"conversations": [{"id": "x", "score": float("nan"), "turns": [{"speaker": "agent", "text": "a"}]}]},
            422,
            "invalid_text",
        ),
        (
            "/v1/classify",
            {"conversations": [{"id": "x", "turns": [{"speaker": "agent", "text": "a"}] * 6}]},
            422,
            "too_many_items",
        ),
        (
            "/v1/classify",
            {"conversations": [{"id": "x", "turns": [{"speaker": "customer", "text": "z" * 101}]}]},
            422,
            "text_too_long",
        ),
    ],
)
def test_bad_input_gets_a_typed_4xx(scripted, path, body, status, error_type):
    with make_client(scripted, max_text_chars=100, max_items=3, max_conversation_turns=5) as client:
        # A lone surrogate cannot be sent by the client's UTF-8 encoder: send its JSON escape instead.
        response = client.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
        assert_error(response, status, error_type)
        assert client.get("/v1/conversations").json()["count"] == 0  # bad input leaves no conversation behind


@pytest.mark.parametrize(
    ("body", "content_type", "status", "error_type"),
    [
        (b'{"speaker": "customer", "text": ', "application/json", 400, "invalid_json"),
        (b"not json at all", "application/json", 400, "invalid_json"),
        (b'{"speaker": "customer", "text": "\xff\xfe bad bytes"}', "application/json", 400, "invalid_encoding"),
        (b"\xc3\x28", "application/json", 400, "invalid_encoding"),
        (b"[" * 4000, "application/json", 400, "invalid_json"),
        (b"", "application/json", 422, "missing_body"),
        (b'{"speaker": "customer", "text": "hi"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"speaker": "customer", "text": "' + b"a" * 5000 + b'"}', "application/json", 413, "body_too_large"),
    ],
)
def test_unreadable_bodies_get_a_typed_4xx(scripted, body, content_type, status, error_type):
    with make_client(scripted, max_body_bytes=4096) as client:
        assert_error(client.post(TURNS, content=body, headers={"Content-Type": content_type}), status, error_type)


def test_a_chunked_body_over_the_limit_is_refused(scripted):
    def chunks():
        for _ in range(10):
            yield b"x" * 1000

    with make_client(scripted, max_body_bytes=4096) as client:
        assert_error(
            client.post(TURNS, content=chunks(), headers={"Content-Type": "application/json"}), 413, "body_too_large"
        )


@pytest.mark.parametrize(
    ("method", "path", "status", "error_type"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found"),
        ("GET", "/v1/conversations/unknown", 404, "unknown_conversation"),
        ("DELETE", "/v1/conversations/unknown", 404, "unknown_conversation"),
        ("GET", "/v1/conversations/" + "x" * 129, 422, "validation_error"),
        ("GET", "/v1/conversations/bad%01id", 422, "validation_error"),
        ("GET", "/v1/conversations/bad%C2%85id", 422, "validation_error"),  # NEL, a C1 control character
        ("GET", "/v1/conversations/x%EF%BF%BD", 422, "validation_error"),  # U+FFFD, what undecodable bytes become
        # Not UTF-8: a server decodes both to "x\ufffd", the same id; neither is one.
        ("GET", "/v1/conversations/x%FF", 400, "invalid_encoding"),
        ("DELETE", "/v1/conversations/x%FE", 400, "invalid_encoding"),
        ("GET", "/v1/nothing%FF", 400, "invalid_encoding"),
        ("PUT", "/v1/conversations/c", 405, "method_not_allowed"),
        ("GET", "/v1/classify", 405, "method_not_allowed"),
        ("GET", "/v1/conversations?limit=0", 422, "validation_error"),
        ("GET", "/v1/conversations?limit=abc", 422, "validation_error"),
        ("GET", "/v1/alerts/stream?max_events=0", 422, "validation_error"),
        ("GET", "/v1/alerts/stream?timeout=-1", 422, "validation_error"),
    ],
)
def test_bad_paths_and_methods_get_a_typed_4xx(client, method, path, status, error_type):
    assert_error(client.request(method, path), status, error_type)


def test_paths_that_are_not_utf8_do_not_reach_a_conversation(client):
    for path in ("/v1/conversations/x%FF/turns", "/v1/conversations/x%FE/turns"):
        assert_error(client.post(path, json={"speaker": "customer", "text": "hi"}), 400, "invalid_encoding")
    # U+FFFD itself (sent as UTF-8) is no id either: it is what a server without raw paths would decode them to.
    turn = client.post("/v1/conversations/x%EF%BF%BD/turns", json={"speaker": "customer", "text": "hi"})
    assert_error(turn, 422, "validation_error")
    assert client.get("/v1/conversations").json()["count"] == 0


def test_an_idle_conversation_expires_when_touched_even_between_sweeps(scripted, fake_clock):
    config = ServeConfig(idle_timeout_s=60, sweep_interval_s=3600)
    with TestClient(create_app(config, classifier=scripted, clock=fake_clock), base_url="http://localhost") as client:
        post_turn(client, "a", "[angry 0.9] hello?")
        post_turn(client, "b", "hi")
        fake_clock.advance(61)
        assert_error(client.get("/v1/conversations/a"), 404, "unknown_conversation")
        assert post_turn(client, "b", "new turn after the timeout")["state"]["turns"] == 1  # a fresh conversation
        ended = [
            (e["conversation_id"], e["reason"])
            for e in client.get("/v1/alerts").json()["events"]
            if e["kind"] == "ended"
        ]
        assert ended == [("a", "expired"), ("b", "expired")]


@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_without_a_classifier_the_model_loads_at_startup(tiny_model_dir, backend, monkeypatch):
    app = create_app(ServeConfig(model_dir=str(tiny_model_dir), backend=backend))
    server, loaded = app.state.server, threading.Event()
    load_model = server.load_model

    def load_model_and_say_so():
        try:
            load_model()
        finally:
            loaded.set()

    monkeypatch.setattr(server, "load_model", load_model_and_say_so)  # what the startup thread runs
    with TestClient(app, base_url="http://localhost") as client:
        assert loaded.wait(120)  # a bound on a hang (an ONNX export takes real seconds), not a measurement
        assert client.get("/readyz").json()["ready"] is True
        served = post_turn(client, "c", "опять не работает")["prediction"]
        assert client.get("/v1/info").json()["model"]["backend"] == ("onnx" if backend == "auto" else "torch")
    direct = Classifier.from_pretrained(tiny_model_dir, backend=backend).classify(["опять не работает"])[0].to_dict()
    assert served["emotion"] == direct["emotion"] and served["scores"] == pytest.approx(direct["scores"], abs=1e-5)


def test_run_server_binds_localhost_without_keys_and_keeps_keys_out_of_access_logs(scripted, monkeypatch, caplog):
    from tonewatch.serve.app import StoppingServer, run_server

    calls = []
    monkeypatch.setattr(StoppingServer, "run", lambda self, sockets=None: calls.append(self.config))
    caplog.set_level("INFO", logger="tonewatch")
    run_server(ServeConfig(host="0.0.0.0", port=8123), classifier=scripted)
    (settings,) = calls
    app = settings.app
    assert settings.host == "127.0.0.1" and settings.port == 8123 and settings.access_log is False
    assert "listening on 127.0.0.1 only" in caplog.text
    assert app.state.server.classifier is scripted


def test_the_app_serves_again_after_a_restart(scripted):
    app = create_app(ServeConfig(), classifier=scripted)
    for _ in range(2):
        with TestClient(app, base_url="http://localhost") as client:
            assert post_turn(client, "c", "hello")["prediction"]["emotion"] == "calm"
