"""Schemathesis fuzzes every operation of the OpenAPI schema against the app with the tiny model.

Valid and invalid generated requests (odd Unicode, wrong types, missing
fields) reach the real tokenizer and network through live turns and
/v1/classify. No answer is a 5xx, every error has the typed body, and every
answer conforms to the schema: a documented status code and media type, and
a body that validates against the documented response model.
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.errors import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tonewatch.serve.app import create_app  # noqa: E402
from tonewatch.serve.config import ServeConfig  # noqa: E402

EXAMPLES_PER_OPERATION = 20
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def fuzz_operation(operation, mode, failures: list[str]):
    """A Hypothesis test of ``operation`` in ``mode`` (valid or invalid requests); records 5xx, untyped errors and
    answers that do not conform to the schema."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case):
        response = case.call()
        label = f"{case.method} {case.formatted_path} ({mode.value})"
        if response.status_code >= 500:
            failures.append(f"{label} -> {response.status_code}: {response.text[:300]}")
        elif response.status_code >= 400 and set(response.json()) != {"error", "error_type"}:
            failures.append(f"{label} -> untyped error body {response.text[:300]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            failures.extend(f"{label} -> {failure.title}: {failure.message[:300]}" for failure in group.exceptions)

    return fuzz


def test_no_operation_answers_5xx_or_off_schema(tiny_classifier):
    # Streams close within 0.2 s, so fuzzing the SSE endpoint cannot hang the run.
    # Schemathesis's ASGI client sends `Host: testserver`, which a keyless server answers only when allowed.
    config = ServeConfig(sse_max_duration_s=0.2, sse_keepalive_s=0.05, max_text_chars=500, allowed_hosts=["testserver"])
    app = create_app(config, classifier=tiny_classifier)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.label for operation in operations} >= {
        "POST /v1/classify",
        "POST /v1/conversations/{conversation_id}/turns",
        "GET /v1/alerts/stream",
    }
    failures: list[str] = []
    with TestClient(app):  # runs the lifespan, as a server would
        for operation in operations:
            for mode in schemathesis.GenerationMode:
                try:
                    fuzz_operation(operation, mode, failures)()
                except Unsatisfiable:
                    # An operation without parameters or body has no invalid request to make.
                    assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert not failures, "\n".join(failures[:20])
