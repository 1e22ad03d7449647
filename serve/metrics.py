"""Prometheus metrics of one app, in a registry of its own (two apps in one process do not collide)."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tonewatch.tracking import AlertEvent

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts and latencies, turns classified by label, alerts raised, model batches, live gauges."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "tonewatch_http_requests",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tonewatch_http_request_duration_seconds",
            "HTTP request latency (time to the first response byte for streams) by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.turns = Counter(
            "tonewatch_turns_classified",
            "Customer turns and texts classified, by predicted label and by endpoint.",
            ["label", "endpoint"],
            registry=self.registry,
        )
        self.events = Counter(
            "tonewatch_alert_events",
            "Supervisor events published, by kind (alert, all_clear, ended) and reason.",
            ["kind", "reason"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "tonewatch_model_batch_turns",
            "Turns per model call (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "tonewatch_model_batch_requests",
            "Requests served by one model call (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.model_seconds = Histogram(
            "tonewatch_model_call_seconds",
            "Duration of one model call.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.live_conversations = Gauge(
            "tonewatch_live_conversations", "Live conversations held.", registry=self.registry
        )
        self.stream_clients = Gauge(
            "tonewatch_alert_stream_clients", "Clients connected to the alert stream.", registry=self.registry
        )

    def observe_batch(self, requests: int, turns: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_size.observe(turns)
        self.model_seconds.observe(seconds)

    def observe_event(self, event: AlertEvent) -> None:
        self.events.labels(event.kind, event.reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route template (never the raw path: bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500, "timed": False}

        async def send_and_time(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                # Streams (SSE) are timed to their first byte; their whole duration is the client's choice.
                self._record(scope, status["code"], time.perf_counter() - started)
                status["timed"] = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_time)
        finally:
            if not status["timed"]:
                self._record(scope, status["code"], time.perf_counter() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        method = scope.get("method", "")
        self.metrics.requests.labels(method, template, str(status)).inc()
        self.metrics.latency.labels(method, template).observe(seconds)
