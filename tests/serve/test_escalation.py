"""The escalation policy behind the server: reasons on alerts (API and stream), /v1/classify, [escalation] config."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from fastapi.testclient import TestClient

from tonewatch.configfile import ConfigError
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig

from .conftest import ScriptedClassifier
from .test_alerts import parse_sse

SIGNAL_PATTERN = re.compile(r"\{(\w+) ([01](?:\.\d+)?)\}")


class SignalScripted(ScriptedClassifier):
    """The scripted model with a signal head: ``{supervisor_request 0.9}`` in a text is that signal's probability
    (customer turns: in the prediction; agent turns: from ``agent_signals``)."""

    signal_names = ("supervisor_request", "external_threat", "harm_threat", "apology_or_offer", "refusal",
                    "abuse_warning")  # fmt: skip

    def classify(self, items, batch_size: int = 64):
        predictions = super().classify(items, batch_size)
        return [
            dataclasses.replace(prediction, signals={"supervisor_request": 0.01, **self._signals(item.text)})
            for prediction, item in zip(predictions, items, strict=True)
        ]

    def agent_signals(self, items, batch_size: int = 64):
        self.agent_calls = [*getattr(self, "agent_calls", []), list(items)]
        return [self._signals(item.text) for item in items]

    @staticmethod
    def _signals(text: str) -> dict[str, float]:
        return {name: float(value) for name, value in SIGNAL_PATTERN.findall(text)}


def post(client, conversation_id, text, speaker="customer", **fields):
    response = client.post(
        f"/v1/conversations/{conversation_id}/turns", json={"speaker": speaker, "text": text, **fields}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_live_alert_names_its_reasons_the_triggering_turn_and_what_to_do():
    model = SignalScripted()
    with TestClient(
        create_app(ServeConfig(alert={"cooldown_seconds": 0.0}), classifier=model), base_url="http://localhost"
    ) as client:
        post(client, "c", "Здравствуйте", speaker="agent", lang="ru")
        calm_request = post(client, "c", "[calm 0.05] Позовите, пожалуйста, старшего {supervisor_request 0.92}")
        alert = calm_request["alert"]
        assert alert["reasons"] == ["supervisor_request"] and alert["since_turn"] == {"supervisor_request": 1}
        assert alert["turn_index"] == 1 and "supervisor" in alert["message"]
        escalation = calm_request["prediction"]["escalation"]
        assert escalation["reasons"] == ["supervisor_request"] and escalation["score"] == pytest.approx(0.92)
        assert calm_request["prediction"]["signals"]["supervisor_request"] == 0.92
        assert calm_request["state"]["escalation"]["since_turn"] == {"supervisor_request": 1}
        post(client, "c", "Если вы продолжите выражаться, я завершу звонок {abuse_warning 0.9}", speaker="agent")
        assert [item.text for item in model.agent_calls[-1]] == [
            "Если вы продолжите выражаться, я завершу звонок {abuse_warning 0.9}"
        ]
        again = post(client, "c", "[abusive 0.3] Ты тупая")
        assert again["alert"]["reasons"][0] == "abuse_after_warning"
        assert again["alert"]["since_turn"]["abuse_after_warning"] == 3
        assert "may now end the call" in again["alert"]["message"]
        events = client.get("/v1/alerts").json()["events"]
    assert [event["reasons"][0] for event in events] == ["supervisor_request", "abuse_after_warning"]


def test_the_stream_carries_the_reasons(scripted, event_timeout):
    app = create_app(ServeConfig(sse_keepalive_s=0.05), classifier=scripted)
    with TestClient(app, base_url="http://localhost") as client:
        params = {"max_events": 1, "timeout": event_timeout}
        with client.stream("GET", "/v1/alerts/stream", params=params) as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 3000"
            post(client, "s", "[frustrated 0.2] hm")
            post(client, "s", "[abusive 0.9] x")
            text = "\n".join(["retry: 3000", *lines])
    (record,) = parse_sse(text)
    data = record["data"]
    # A model without signals: the abuse rule (the abusive label) and the learnt score, both from turn 1.
    assert data["reasons"] == ["abuse", "learnt_score"] and data["since_turn"] == {"abuse": 1, "learnt_score": 1}
    assert data["message"].startswith("Escalate: the customer is abusive (turn 1)")


def test_a_model_without_signals_alerts_on_its_learnt_score_as_before(client):
    post(client, "old", "[calm 0.1] hello")
    alert = post(client, "old", "[angry 0.8] third time!")["alert"]
    assert (alert["reason"], alert["reasons"], alert["since_turn"]) == (
        "escalation",
        ["learnt_score"],
        {"learnt_score": 1},
    )


@pytest.fixture
def client(scripted):
    with TestClient(
        create_app(ServeConfig(alert={"cooldown_seconds": 0.0}), classifier=scripted), base_url="http://localhost"
    ) as test_client:
        yield test_client


def test_classify_conversations_applies_the_same_policy_and_a_text_is_a_one_turn_conversation():
    conversation = {"id": 1, "lang": "zh", "turns": [
        {"speaker": "customer", "text": "[frustrated 0.2] 我要退款"},
        {"speaker": "agent", "text": "抱歉，这个无法退款 {refusal 0.9}"},
        {"speaker": "customer", "text": "[angry 0.3] 凭什么"}]}  # fmt: skip
    with TestClient(create_app(ServeConfig(), classifier=SignalScripted()), base_url="http://localhost") as client:
        labelled = client.post("/v1/classify", json={"conversations": [conversation]}).json()["conversations"][0]
        texts = client.post("/v1/classify", json={"texts": ["[angry 0.3] 凭什么"]}).json()["texts"]
    escalations = [turn["prediction"]["escalation"] for turn in labelled["turns"] if "prediction" in turn]
    assert [e["reasons"] for e in escalations] == [[], ["refusal_not_accepted"]]
    assert escalations[1]["since_turn"] == {"refusal_not_accepted": 2}
    # a text has no context: no refusal before it, so no reason (a trigger in it would give one)
    escalation = texts[0]["prediction"]["escalation"]
    assert escalation["reasons"] == [] and not escalation["escalate"] and escalation["since_turn"] == {}


def test_the_escalation_table_of_the_server_config_turns_a_rule_off(tmp_path):
    path = tmp_path / "serve.toml"
    path.write_text("[escalation]\nlearnt_head = 'fallback'\n[escalation.supervisor_request]\nenabled = false\n")
    config = ServeConfig.from_toml(path)
    assert not config.escalation.supervisor_request.enabled and config.escalation.external_threat.enabled
    with TestClient(create_app(config, classifier=SignalScripted()), base_url="http://localhost") as client:
        body = post(client, "c", "[calm 0.05] старшего {supervisor_request 0.92}")
        info = client.get("/v1/info").json()
    assert body["alert"] is None and body["prediction"]["escalation"]["reasons"] == []
    assert info["escalation_policy"]["supervisor_request"]["enabled"] is False
    assert "abuse_after_warning" in info["alert_policy"]["update_reasons"]
    assert "supervisor_request" in info["alert_policy"]["immediate_reasons"]
    assert info["model"]["signals"] == list(SignalScripted.signal_names)
    path.write_text("[escalation.supervisor_request]\nenabeld = false\n")
    with pytest.raises(ConfigError, match=r"serve.toml: .*unknown key 'enabeld'"):
        ServeConfig.from_toml(path)


def test_alert_policy_rejects_unknown_reasons():
    with pytest.raises(ValueError, match="unknown reasons"):
        ServeConfig(alert={"immediate_reasons": ["shouting"]})
    assert json.dumps(ServeConfig().to_dict())  # the resolved config (with its policy) stays JSON
