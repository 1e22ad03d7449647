"""API keys and scopes: 401 without a valid key, 403 with the wrong scope, 200 with the right one."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tonewatch.serve.app import create_app
from tonewatch.serve.config import ApiKey, ServeConfig

WRITE_KEY = "write-key-0123456789"
READ_KEY = "read-key-0123456789a"
BOTH_KEY = "both-key-0123456789a"

TURN = {"speaker": "customer", "text": "[angry 0.9] hello"}

# (method, path, json body, scope needed)
ENDPOINTS = [
    ("POST", "/v1/classify", {"texts": ["hello"]}, "write"),
    ("POST", "/v1/conversations/c1/turns", TURN, "write"),
    ("DELETE", "/v1/conversations/c1", None, "write"),
    ("GET", "/v1/conversations/c1", None, "read"),
    ("GET", "/v1/conversations", None, "read"),
    ("GET", "/v1/alerts", None, "read"),
    ("GET", "/v1/alerts/stream?timeout=0.05", None, "read"),
]


@pytest.fixture
def keys() -> list[ApiKey]:
    """A write-only client (telephony), a read-only one (supervisors), and one with both scopes."""
    return [
        ApiKey(WRITE_KEY, ["write"], "telephony"),
        ApiKey(READ_KEY, ["read"], "supervisors"),
        ApiKey(BOTH_KEY, ["read", "write"], "admin"),
    ]


@pytest.fixture
def client(scripted, keys):
    with TestClient(create_app(ServeConfig(api_keys=keys), classifier=scripted)) as test_client:
        # A live conversation, so that reads and deletes of c1 can succeed.
        assert (
            test_client.post("/v1/conversations/c1/turns", json=TURN, headers={"X-API-Key": WRITE_KEY}).status_code
            == 200
        )
        yield test_client


def call(client, method, path, body, headers):
    return client.request(method, path, json=body, headers=headers)


def assert_error(response, status, error_type):
    assert response.status_code == status, response.text
    assert response.json()["error_type"] == error_type


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_no_key_or_a_wrong_key_is_401(client, method, path, body, scope):
    response = call(client, method, path, body, {})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(
        call(client, method, path, body, {"Authorization": "Bearer not-a-configured-key-000"}), 401, "unauthorized"
    )
    assert_error(call(client, method, path, body, {"X-API-Key": WRITE_KEY[:-1]}), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
def test_the_wrong_scope_is_403_and_the_right_one_passes(client, method, path, body, scope):
    right, wrong = (WRITE_KEY, READ_KEY) if scope == "write" else (READ_KEY, WRITE_KEY)
    assert_error(call(client, method, path, body, {"X-API-Key": wrong}), 403, "forbidden")
    assert call(client, method, path, body, {"Authorization": f"Bearer {right}"}).status_code == 200
    if method != "DELETE":  # c1 is gone after the first successful delete
        assert call(client, method, path, body, {"X-API-Key": BOTH_KEY}).status_code == 200


def test_a_read_key_in_the_query_works_for_reads_only(client):
    # EventSource cannot set headers, so the dashboard passes its read key as ?key=.
    assert client.get(f"/v1/alerts/stream?timeout=0.05&key={READ_KEY}").status_code == 200
    assert client.get(f"/v1/conversations?key={READ_KEY}").status_code == 200
    assert_error(client.post(f"/v1/conversations/c1/turns?key={WRITE_KEY}", json=TURN), 401, "unauthorized")
    assert_error(client.post(f"/v1/classify?key={BOTH_KEY}", json={"texts": ["a"]}), 401, "unauthorized")


def test_info_takes_either_scope_and_probes_metrics_dashboard_are_open(client):
    assert_error(client.get("/v1/info"), 401, "unauthorized")
    for key in (READ_KEY, WRITE_KEY):
        info = client.get("/v1/info", headers={"X-API-Key": key}).json()
        assert info["auth"] is True
    for path in ("/healthz", "/readyz", "/metrics", "/", "/static/dashboard.js"):
        assert client.get(path).status_code == 200, path


def test_keys_never_appear_in_the_access_log(client, caplog):
    caplog.set_level("INFO", logger="tonewatch.serve.access")
    client.get(f"/v1/conversations?key={READ_KEY}")
    client.get("/v1/conversations", headers={"X-API-Key": READ_KEY})
    lines = [record.getMessage() for record in caplog.records if record.name == "tonewatch.serve.access"]
    assert any(line.startswith("GET /v1/conversations 200") for line in lines)
    assert not any(READ_KEY in line for line in lines)


def test_without_keys_everything_is_open_and_bound_to_localhost(scripted):
    config = ServeConfig(host="0.0.0.0")
    host, notice = config.bind_host()
    assert host == "127.0.0.1" and "127.0.0.1 only" in notice
    with TestClient(create_app(config, classifier=scripted)) as client:
        assert client.post("/v1/conversations/c/turns", json=TURN).status_code == 200
        assert client.get("/v1/conversations").status_code == 200
