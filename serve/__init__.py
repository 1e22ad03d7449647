"""The real-time service: predictions -> HTTP, live conversations, supervisor alerts, dashboard.

Nothing is built at import time: ``tonewatch.serve.app.create_app(config)``
builds an app from a :class:`tonewatch.serve.config.ServeConfig`, and
``tonewatch.serve.app.run_server(config)`` serves it with uvicorn. Modules:
``config`` (settings), ``app`` (``create_app``, ``run_server``), ``routes/``
(one ``APIRouter`` per group of endpoints), ``schemas`` (request and response
models: the OpenAPI schema), ``server`` (what one app holds), ``batching``
(micro-batcher), ``state`` (live conversations, idle expiry), ``alerts``
(pub/sub for the SSE stream), ``auth`` (API keys and scopes, as a FastAPI
dependency), ``errors`` (typed errors), ``metrics`` (Prometheus),
``static/`` (the dashboard). The server imports nothing from
``tonewatch.training``.
"""
