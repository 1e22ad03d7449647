"""API keys and scopes: 401 without a valid key, 403 with the wrong scope, 200 with the right one."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Annotated

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from tonewatch.serve.app import create_app
from tonewatch.serve.auth import Authenticator, require_scope
from tonewatch.serve.config import ApiKey, ServeConfig
from tonewatch.serve.errors import install_error_handlers

WRITE_KEY = "write-key-0123456789"
READ_KEY = "read-key-0123456789a"
BOTH_KEY = "both-key-0123456789a"
METRICS_KEY = "metrics-key-0123456789"

TURN = {"speaker": "customer", "text": "[angry 0.9] hello"}

# Every operation of the API: (method, path template) -> (a path to call, json body, the scopes that may call it).
# None = open to everyone (probes, the dashboard page). A new route must be added here.
ROUTES = {
    ("GET", "/"): ("/", None, None),
    ("GET", "/healthz"): ("/healthz", None, None),
    ("GET", "/readyz"): ("/readyz", None, None),
    ("GET", "/metrics"): ("/metrics", None, ("read", "metrics")),
    ("GET", "/v1/info"): ("/v1/info", None, ("read", "write")),
    ("POST", "/v1/classify"): ("/v1/classify", {"texts": ["hello"]}, ("write",)),
    ("POST", "/v1/conversations/{conversation_id}/turns"): ("/v1/conversations/c1/turns", TURN, ("write",)),
    ("DELETE", "/v1/conversations/{conversation_id}"): ("/v1/conversations/c1", None, ("write",)),
    ("GET", "/v1/conversations/{conversation_id}"): ("/v1/conversations/c1", None, ("read",)),
    ("GET", "/v1/conversations"): ("/v1/conversations", None, ("read",)),
    ("GET", "/v1/alerts"): ("/v1/alerts", None, ("read",)),
    ("GET", "/v1/alerts/stream"): ("/v1/alerts/stream?timeout=0.05", None, ("read",)),
}
PROTECTED = [(method, *ROUTES[method, template]) for method, template in ROUTES if ROUTES[method, template][2]]
OPEN = [(method, ROUTES[method, template][0]) for method, template in ROUTES if not ROUTES[method, template][2]]
KEYS_BY_SCOPE = {"write": WRITE_KEY, "read": READ_KEY, "metrics": METRICS_KEY}


@pytest.fixture
def keys() -> list[ApiKey]:
    """A write-only client (telephony), a read-only one (supervisors), one with both scopes, and Prometheus."""
    return [
        ApiKey(WRITE_KEY, ["write"], "telephony"),
        ApiKey(READ_KEY, ["read"], "supervisors"),
        ApiKey(BOTH_KEY, ["read", "write"], "admin"),
        ApiKey(METRICS_KEY, ["metrics"], "prometheus"),
    ]


@pytest.fixture
def client(scripted, keys):
    with TestClient(
        create_app(ServeConfig(api_keys=keys), classifier=scripted), base_url="http://localhost"
    ) as test_client:
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


def test_the_table_covers_every_operation_of_the_schema(client):
    operations = {(method.upper(), path) for path, item in client.app.openapi()["paths"].items() for method in item}
    assert operations == set(ROUTES)


@pytest.mark.parametrize(("method", "path", "body", "scopes"), PROTECTED)
def test_no_key_or_a_wrong_key_is_401(client, method, path, body, scopes):
    response = call(client, method, path, body, {})
    assert_error(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(
        call(client, method, path, body, {"Authorization": "Bearer not-a-configured-key-000"}), 401, "unauthorized"
    )
    assert_error(call(client, method, path, body, {"X-API-Key": WRITE_KEY[:-1]}), 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body", "scopes"), PROTECTED)
def test_the_wrong_scope_is_403_and_the_right_one_passes(client, method, path, body, scopes):
    for scope, key in KEYS_BY_SCOPE.items():
        response = call(client, method, path, body, {"X-API-Key": key})
        if scope in scopes:
            assert response.status_code == 200, (scope, response.text)
        else:
            assert_error(response, 403, "forbidden")
    if method != "DELETE":  # c1 is gone after the first successful delete
        right = KEYS_BY_SCOPE[scopes[0]]
        assert call(client, method, path, body, {"Authorization": f"Bearer {right}"}).status_code == 200
        assert call(client, method, path, body, {"X-API-Key": BOTH_KEY}).status_code == 200


@pytest.mark.parametrize(("method", "path"), OPEN)
def test_probes_and_the_dashboard_page_need_no_key(client, method, path):
    assert client.request(method, path).status_code == 200


def test_the_schema_shows_each_operations_security(client):
    schema = client.app.openapi()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {"type": "http", "scheme": "bearer", "description": schemes["bearer"]["description"]}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    assert (schemes["apiKeyQuery"]["in"], schemes["apiKeyQuery"]["name"]) == ("query", "key")
    for (method, template), (_, _, scopes) in ROUTES.items():
        operation = schema["paths"][template][method.lower()]
        security = [name for requirement in operation.get("security", []) for name in requirement]
        if scopes is None:
            assert security == [], template
        elif scopes == ("read",) and method == "GET":  # EventSource cannot send headers: ?key= is allowed
            assert security == ["bearer", "apiKey", "apiKeyQuery"], template
        else:
            assert security == ["bearer", "apiKey"], template
        if scopes is not None:
            for status in ("401", "403"):
                assert operation["responses"][status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }


def test_a_request_without_a_key_is_refused_before_its_body_is_validated(client):
    # Nothing about the API's validation is told to a caller without a key.
    assert_error(client.post("/v1/conversations/c1/turns", json={"speaker": "boss"}), 401, "unauthorized")
    assert_error(client.post("/v1/classify", json={"texts": "not a list"}), 401, "unauthorized")
    response = client.post("/v1/classify", json={"texts": "not a list"}, headers={"X-API-Key": WRITE_KEY})
    assert_error(response, 422, "validation_error")


def test_a_read_key_in_the_query_works_for_reads_only(client):
    # EventSource cannot set headers, so the dashboard passes its read key as ?key=.
    assert client.get(f"/v1/alerts/stream?timeout=0.05&key={READ_KEY}").status_code == 200
    assert client.get(f"/v1/conversations?key={READ_KEY}").status_code == 200
    assert_error(client.post(f"/v1/conversations/c1/turns?key={WRITE_KEY}", json=TURN), 401, "unauthorized")
    assert_error(client.post(f"/v1/classify?key={BOTH_KEY}", json={"texts": ["a"]}), 401, "unauthorized")


def test_info_says_auth_is_on_and_the_static_files_are_open(client):
    for key in (READ_KEY, WRITE_KEY):
        assert client.get("/v1/info", headers={"X-API-Key": key}).json()["auth"] is True
    for path in ("/static/dashboard.js", "/static/dashboard.css", "/docs/assets/swagger-ui-bundle.js"):
        assert client.get(path).status_code == 200, path


def test_metrics_need_a_read_or_metrics_key_in_a_header(client):
    # Prometheus sends `authorization: {credentials: KEY}` as `Authorization: Bearer KEY`.
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
    assert response.status_code == 200 and "tonewatch_http_requests" in response.text
    assert_error(client.get("/metrics"), 401, "unauthorized")
    assert_error(client.get(f"/metrics?key={READ_KEY}"), 401, "unauthorized")  # headers only, as for writes
    assert_error(client.get("/metrics", headers={"X-API-Key": WRITE_KEY}), 403, "forbidden")
    # A metrics key reads nothing else (no transcripts, no conversations).
    assert_error(client.get("/v1/alerts", headers={"X-API-Key": METRICS_KEY}), 403, "forbidden")


def test_the_schema_and_the_docs_page_need_a_read_key(client):
    for path in ("/openapi.json", "/docs"):
        assert_error(client.get(path), 401, "unauthorized")
        assert_error(client.get(path, headers={"X-API-Key": METRICS_KEY}), 403, "forbidden")
        assert client.get(path, headers={"Authorization": f"Bearer {READ_KEY}"}).status_code == 200, path
    assert client.get("/redoc").status_code == 404  # never served
    # A browser opens /docs?key=KEY; the page then fetches the schema with the same key.
    key = "read/key+&'<x>0123456789"
    with TestClient(
        create_app(
            ServeConfig(api_keys=[ApiKey(key, ["read"], "docs")]), classifier=client.app.state.server.classifier
        ),
        base_url="http://localhost",
    ) as keyed:
        page = keyed.get("/docs", params={"key": key})
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        (schema_url,) = re.findall(r"url: '([^']*)'", page.text)
        assert schema_url == "/openapi.json?key=read%2Fkey%2B%26%27%3Cx%3E0123456789"  # quoted: no way out of the JS
        assert keyed.get(schema_url).json()["paths"]["/v1/classify"]
        assert "url: '/openapi.json'" in keyed.get("/docs", headers={"X-API-Key": key}).text


def access_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "tonewatch.serve.access"]


def test_keys_never_appear_in_the_access_log_their_names_do(client, caplog):
    caplog.set_level("INFO", logger="tonewatch.serve.access")
    client.get(f"/v1/conversations?key={READ_KEY}")
    client.get("/v1/conversations", headers={"X-API-Key": READ_KEY})
    client.get("/v1/conversations", headers={"X-API-Key": WRITE_KEY})  # a known key without the scope: named
    client.get("/v1/conversations", headers={"X-API-Key": "not-a-configured-key-000"})
    client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_KEY}"})
    client.get("/healthz")
    lines = access_lines(caplog)
    assert [line.split(" ", 2)[:2] + line.rsplit(" ", 1)[-1:] for line in lines] == [
        ["GET", "/v1/conversations", "key=supervisors"],
        ["GET", "/v1/conversations", "key=supervisors"],
        ["GET", "/v1/conversations", "key=telephony"],
        ["GET", "/v1/conversations", "key=-"],
        ["GET", "/metrics", "key=prometheus"],
        ["GET", "/healthz", "key=-"],
    ]
    assert [line.split(" ")[2] for line in lines] == ["200", "200", "403", "401", "200", "200"]
    assert not any(key in line for line in lines for key in (READ_KEY, WRITE_KEY, METRICS_KEY))


def test_an_unnamed_key_is_logged_by_its_position(scripted, caplog):
    caplog.set_level("INFO", logger="tonewatch.serve.access")
    config = ServeConfig(api_keys=[ApiKey(WRITE_KEY, ["write"], "telephony"), ApiKey(READ_KEY, ["read"])])
    with TestClient(create_app(config, classifier=scripted), base_url="http://localhost") as client:
        assert client.get("/v1/alerts", headers={"X-API-Key": READ_KEY}).status_code == 200
    assert access_lines(caplog)[-1].endswith(" key=#2")


def test_without_keys_everything_is_open_and_bound_to_localhost(scripted):
    config = ServeConfig(host="0.0.0.0")
    host, notice = config.bind_host()
    assert host == "127.0.0.1" and "127.0.0.1 only" in notice
    with TestClient(create_app(config, classifier=scripted), base_url="http://localhost") as client:
        assert client.post("/v1/conversations/c/turns", json=TURN).status_code == 200
        assert client.get("/v1/conversations").status_code == 200
        for path in ("/metrics", "/openapi.json", "/docs"):
            assert client.get(path).status_code == 200, path


def test_require_scope_is_a_dependency_any_route_can_declare(keys):
    app = FastAPI()
    app.state.server = SimpleNamespace(auth=Authenticator(keys))
    install_error_handlers(app)

    @app.api_route("/who", methods=["GET", "POST"])
    async def who(name: Annotated[str | None, Depends(require_scope("read"))]) -> dict:
        return {"name": name}

    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/who", headers={"X-API-Key": READ_KEY}).json() == {"name": "supervisors"}
        assert client.get(f"/who?key={BOTH_KEY}").json() == {"name": "admin"}
        assert client.post("/who", headers={"Authorization": f"Bearer {READ_KEY}"}).json() == {"name": "supervisors"}
        # ?key= is for reads by browsers only (EventSource): a POST must send the key in a header.
        assert_error(client.post(f"/who?key={READ_KEY}"), 401, "unauthorized")
        assert_error(client.get("/who", headers={"X-API-Key": WRITE_KEY}), 403, "forbidden")
    app.state.server = SimpleNamespace(auth=Authenticator([]))
    with TestClient(app, base_url="http://localhost") as client:
        assert client.post("/who").json() == {"name": None}  # no keys configured: no authentication
    with pytest.raises(ValueError, match="scopes"):
        require_scope("admin")
    with pytest.raises(ValueError, match="scopes"):
        require_scope()
