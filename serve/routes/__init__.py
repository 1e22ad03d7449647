"""The HTTP routes, one ``APIRouter`` per group; ``tonewatch.serve.app.create_app`` includes them all.

``health`` (probes, metrics), ``info`` (the model), ``classify`` (batch predictions),
``conversations`` (live turns and states), ``alerts`` (recent events, the SSE stream),
``dashboard`` (the supervisor page). Each route declares its API-key scope as a
dependency (:func:`tonewatch.serve.auth.require_scope`) and its response model.
``docs`` (the OpenAPI schema and the Swagger UI page, left out of the schema) is
included by ``create_app`` apart, as ``api_docs`` says.
"""

from __future__ import annotations

from fastapi import APIRouter

from tonewatch.serve.routes import alerts, classify, conversations, dashboard, health, info

ROUTERS: tuple[APIRouter, ...] = (
    dashboard.router,
    health.router,
    info.router,
    classify.router,
    conversations.router,
    alerts.router,
)
"""Every router, in the order the OpenAPI schema lists them."""
