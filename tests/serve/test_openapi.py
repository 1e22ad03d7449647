"""The OpenAPI schema says what each operation returns, and the API docs page loads nothing from other hosts."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tonewatch.labels import EMOTION_LABELS
from tonewatch.serve.app import create_app
from tonewatch.serve.config import ServeConfig

REF = "#/components/schemas/"

# The response model of every JSON operation's 200 answer.
RESPONSE_MODELS = {
    ("GET", "/healthz"): "Health",
    ("GET", "/readyz"): "Readiness",
    ("GET", "/v1/info"): "Info",
    ("POST", "/v1/conversations/{conversation_id}/turns"): "TurnResult",
    ("GET", "/v1/conversations/{conversation_id}"): "ConversationStateResult",
    ("DELETE", "/v1/conversations/{conversation_id}"): "EndedConversation",
    ("GET", "/v1/conversations"): "ConversationList",
    ("GET", "/v1/alerts"): "AlertList",
}
# Operations that answer something else than JSON: their media type.
MEDIA_TYPES = {("GET", "/"): "text/html", ("GET", "/metrics"): "text/plain", ("GET", "/v1/alerts/stream"): None}


@pytest.fixture
def client(scripted):
    with TestClient(create_app(ServeConfig(), classifier=scripted), base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_every_json_operation_documents_its_response_model(schema):
    documented = {}
    for method, path, operation in operations(schema):
        content = operation["responses"]["200"]["content"]
        if (method, path) in MEDIA_TYPES:
            continue
        assert list(content) == ["application/json"], (method, path)
        documented[method, path] = content["application/json"]["schema"]
    classify = documented.pop(("POST", "/v1/classify"))
    assert classify["anyOf"] == [{"$ref": REF + "ClassifiedTexts"}, {"$ref": REF + "ClassifiedConversations"}]
    assert documented == {operation: {"$ref": REF + model} for operation, model in RESPONSE_MODELS.items()}


def test_streams_pages_and_metrics_document_their_media_type(schema):
    assert list(schema["paths"]["/"]["get"]["responses"]["200"]["content"]) == ["text/html"]
    assert list(schema["paths"]["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    stream = schema["paths"]["/v1/alerts/stream"]["get"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    event = stream["text/event-stream"]["itemSchema"]
    assert event["properties"]["data"]["contentSchema"] == {"$ref": REF + "AlertEventBody"}
    assert event["properties"]["event"]["enum"] == ["alert", "all_clear", "ended"]


def test_every_error_is_documented_with_the_typed_error_body(schema):
    components = schema["components"]["schemas"]
    assert components["ErrorBody"]["required"] == ["error", "error_type"]
    assert "HTTPValidationError" not in components  # FastAPI's own 422 body is never sent
    for method, path, operation in operations(schema):
        errors = {status: response for status, response in operation["responses"].items() if status >= "400"}
        assert "500" in errors, (method, path)
        for status, response in errors.items():
            assert response["content"] == {"application/json": {"schema": {"$ref": REF + "ErrorBody"}}}, status
            assert response["description"], status
        has_parameters = bool(operation.get("parameters") or operation.get("requestBody"))
        assert ("422" in errors) == has_parameters, (method, path)
        assert ("400" in errors and "413" in errors and "415" in errors) == ("requestBody" in operation)
    turns = schema["paths"]["/v1/conversations/{conversation_id}/turns"]["post"]["responses"]
    assert {"409", "503"} <= set(turns)
    assert "404" in schema["paths"]["/v1/conversations/{conversation_id}"]["get"]["responses"]


def test_response_models_name_the_labels_and_keep_the_wire_names(schema):
    components = schema["components"]["schemas"]
    prediction = components["PredictionBody"]
    assert prediction["properties"]["emotion"]["enum"] == list(EMOTION_LABELS)
    assert set(prediction["required"]) == {"emotion", "scores", "escalate", "escalate_score"}
    assert set(components["AlertThresholds"]["properties"]) == {"raise", "clear"}  # "raise", not "raise_"
    state = components["ConversationStateBody"]
    assert state["properties"]["trend"]["enum"] == ["worsening", "stable", "calming"]
    assert set(components["TurnResult"]["required"]) == {"conversation_id", "prediction", "state", "alert", "event"}


def test_a_labelled_conversation_keeps_every_field_as_sent(client):
    # The response model must not touch what the caller sent: ids of any JSON type, extra fields, even an agent
    # turn's own "prediction" field; only customer turns get the model's prediction.
    conversation = {
        "id": 17,
        "lang": "ru",
        "meta": {"nested": [1, 2.5, None, {"deep": True}], "": "empty key"},
        "turns": [
            {"speaker": "agent", "text": "Здравствуйте", "prediction": "kept", "model_config": 1},
            {"speaker": "customer", "text": "[angry 0.8] Опять!", "emotion": "angry", "escalate": True},
        ],
    }
    response = client.post("/v1/classify", json={"conversations": [conversation, {**conversation, "id": True}]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"model", "conversations"}
    first, second = body["conversations"]
    assert second["id"] is True
    customer = first["turns"][1]
    assert customer.pop("prediction")["emotion"] == "angry"
    assert first == conversation


def test_classify_texts_answers_only_the_texts_key(client):
    body = client.post("/v1/classify", json={"texts": ["hello"]}).json()
    assert set(body) == {"model", "texts"}


# -- the docs page ----------------------------------------------------------------------------------------------


def local_references(page: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)


def test_the_docs_page_loads_its_files_from_this_server(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "http://" not in page.text and "https://" not in page.text and "//cdn" not in page.text
    references = local_references(page.text)
    scripts = [reference for reference in references if reference.endswith(".js")]
    assert len(scripts) == 1 and scripts[0].startswith("/docs/assets/")
    for reference in references:
        assert reference.startswith("/"), reference
        asset = client.get(reference)
        assert asset.status_code == 200, reference
    assert len(client.get(scripts[0]).content) > 100_000  # the real Swagger UI bundle, not a stub
    assert "url: '/openapi.json'" in page.text
    # ReDoc is not served: its bundle fetches a logo from cdn.redoc.ly.
    assert client.get("/redoc").status_code == 404


def test_swagger_ui_does_not_call_the_online_validator(client):
    # Swagger UI's default validatorUrl is validator.swagger.io: a request to another host from every page view.
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_docs_page_can_be_turned_off_and_the_schema_stays(scripted):
    with TestClient(
        create_app(ServeConfig(api_docs=False), classifier=scripted), base_url="http://localhost"
    ) as client:
        for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js", "/docs/oauth2-redirect"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error_type"] == "not_found"
        assert client.get("/openapi.json").json()["paths"]["/v1/classify"]
