"""Probes, open to everyone (no API key) for load balancers; metrics for Prometheus, which needs a ``read`` or
``metrics`` key when keys are configured (Prometheus sends it as ``Authorization: Bearer KEY``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse

from tonewatch.serve.auth import require_scope
from tonewatch.serve.errors import ApiError
from tonewatch.serve.schemas import AUTH_ERRORS, Health, Readiness, error_responses
from tonewatch.serve.server import ServerDep

router = APIRouter(tags=["probes"])


@router.get("/healthz", response_model=Health, responses=error_responses())
async def healthz() -> dict:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=error_responses(503))
async def readyz(server: ServerDep) -> dict:
    """The model is loaded and turns can be taken (a state store in Redis answers)."""
    classifier = server.require_ready()
    if server.store.shared:
        problem = await server.store.check()
        if problem is not None:
            raise ApiError(503, "state_unavailable", problem, headers={"Retry-After": "1"})
    return {"ready": True, "model": classifier.config.name, "version": classifier.config.version}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(require_scope("read", "metrics"))],
    responses={
        200: {"description": "Prometheus metrics in the text exposition format."},
        **error_responses(*AUTH_ERRORS, json_route=False),
    },
)
async def metrics(server: ServerDep) -> Response:
    """Prometheus metrics (text format); a ``read`` or ``metrics`` key in a header when keys are configured."""
    return Response(server.metrics.render(), media_type=server.metrics.content_type)
