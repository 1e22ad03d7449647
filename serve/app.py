"""The HTTP server: classification, live conversations, supervisor alerts (SSE), dashboard, metrics.

``create_app(config)`` builds everything (nothing happens at import time) from the
routers of ``tonewatch.serve.routes``; ``run_server(config)`` loads the model and
serves it with uvicorn. See ``tonewatch.serve.config.ServeConfig`` for every setting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tonewatch import __version__
from tonewatch.serve.auth import KEY_STATE
from tonewatch.serve.config import ServeConfig
from tonewatch.serve.errors import BodyLimitMiddleware, SafeJSONResponse, install_error_handlers
from tonewatch.serve.guards import HostAllowList, RequestGuardMiddleware, log_safe
from tonewatch.serve.metrics import RequestMetricsMiddleware
from tonewatch.serve.routes import ROUTERS, docs
from tonewatch.serve.routes.dashboard import STATIC_DIR
from tonewatch.serve.server import Server
from tonewatch.serve.state import StateUnavailableError

logger = logging.getLogger("tonewatch.serve")
access_logger = logging.getLogger("tonewatch.serve.access")


def create_app(config: ServeConfig, classifier=None, *, clock=time.monotonic, wall_clock=time.time) -> FastAPI:
    """The server app for ``config``. ``classifier`` (tests, ``run_server``) skips loading ``config.model_dir``;
    without it the model loads in a worker thread at startup and ``/readyz`` says when it is ready.
    ``clock`` (monotonic seconds) times the duration of alert streams, and idle expiry and cooldowns of
    conversations kept in memory; ``wall_clock`` (Unix seconds) stamps events and times conversations kept in
    Redis (shared between machines)."""
    server = Server(config, classifier, clock, wall_clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if server.batcher.closed:  # the app is started again after a shutdown
            server.batcher = server.new_batcher()
        if server.classifier is None and server.load_error is None:
            loader = threading.Thread(target=server.load_model, name="tonewatch-model-loader", daemon=True)
            loader.start()
        await server.store.start()
        sweeper = asyncio.create_task(_sweep_forever(server))
        try:
            yield
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            await asyncio.to_thread(server.batcher.close)
            await server.store.close()

    # FastAPI's own /openapi.json and /docs answer everyone: this app's own routes (routes/docs.py) need a read key.
    app = FastAPI(
        title="tonewatch",
        summary="Customer emotion and escalation for live Chinese and Russian contact-centre conversations.",
        version=__version__,
        lifespan=lifespan,
        default_response_class=SafeJSONResponse,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.server = server
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(RequestGuardMiddleware, hosts=_host_allow_list(config))
    app.add_middleware(RequestMetricsMiddleware, metrics=server.metrics)
    app.add_middleware(_AccessLogMiddleware)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(docs.schema_router)
    if config.api_docs:
        app.include_router(docs.docs_router)
        app.mount(docs.DOCS_ASSETS_URL, StaticFiles(directory=docs.swagger_assets_dir()), name="docs-assets")
    return app


def _host_allow_list(config: ServeConfig) -> HostAllowList | None:
    """The Host headers the server answers: loopback names and ``allowed_hosts``; any host with keys and no
    ``allowed_hosts`` (``None``: no check)."""
    if config.auth_enabled and not config.allowed_hosts:
        return None
    return HostAllowList(config.allowed_hosts)


async def _sweep_forever(server: Server) -> None:
    """End idle conversations even when no request comes in (requests also sweep, lazily)."""
    while True:
        await asyncio.sleep(server.config.sweep_interval_s)
        try:
            await server.store.expire_idle()
        except StateUnavailableError as error:  # Redis is away: /readyz says so; sweep again when it is back
            logger.debug("sweeping idle conversations: %s", error)
        except Exception:  # never let the sweeper die silently
            logger.exception("sweeping idle conversations failed")


class _AccessLogMiddleware:
    """One line per request: method, path without the query string (it may carry a key), status, duration, and
    ``key=`` the name of the API key presented (never the key; ``-`` for none). The path is as decoded, with
    anything that could break or disguise a line escaped (:func:`~tonewatch.serve.guards.log_safe`)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not access_logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})  # the request's state: where the key check leaves the key's name

        async def logging_send(message) -> None:
            if message["type"] == "http.response.start":
                key = state.get(KEY_STATE)
                access_logger.info(
                    "%s %s %d %.1f ms key=%s",
                    log_safe(scope.get("method")),
                    log_safe(scope.get("path")),
                    message["status"],
                    (time.perf_counter() - started) * 1000,
                    log_safe(key) if key is not None else "-",
                )
            await send(message)

        await self.app(scope, receive, logging_send)


def run_server(config: ServeConfig, classifier=None) -> None:
    """Load the model (or use ``classifier``) and serve ``config`` with uvicorn until interrupted.

    Without API keys the server listens on 127.0.0.1 only and says so. Raises
    :class:`~tonewatch.model.ModelDirectoryError` before listening when the model directory is not a model.
    """
    _configure_logging(config.log_level)
    host, notice = config.bind_host()
    if notice:
        logger.warning(notice)
    if config.torch_threads:
        import torch

        torch.set_num_threads(config.torch_threads)
    if classifier is None:
        from tonewatch.model.classifier import Classifier

        logger.info("loading model %s", config.model_dir or "(the shipped default)")
        classifier = Classifier.from_pretrained(
            config.model_dir, backend=config.backend, threads=config.torch_threads or None
        )
    if config.log_transcripts:
        logger.warning("log_transcripts is on: turn texts are written to the logs (debug only)")
    app = create_app(config, classifier)
    logger.info("serving %s on http://%s:%d (dashboard at /)", classifier.config.name, host, config.port)
    settings = uvicorn.Config(
        app,
        host=host,
        port=config.port,
        access_log=False,  # uvicorn's access log shows query strings, which may hold a key (?key=)
        log_level=config.log_level,
        timeout_graceful_shutdown=5,  # alert streams are ended by the shutdown; a stuck client waits no longer
    )
    StoppingServer(settings).run()


class StoppingServer(uvicorn.Server):
    """uvicorn's server, which first ends the live conversations kept in memory and the alert streams
    (:meth:`Server.begin_shutdown`) when it stops, then waits for connections to close."""

    async def shutdown(self, sockets=None) -> None:
        server = getattr(getattr(self.config.app, "state", None), "server", None)
        if server is not None:
            try:
                server.begin_shutdown()
            except Exception:  # stopping must go on
                logger.exception("ending conversations and streams at shutdown failed")
        await super().shutdown(sockets=sockets)


def _configure_logging(level: str) -> None:
    package_logger = logging.getLogger("tonewatch")
    package_logger.setLevel(level.upper())
    if not package_logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        package_logger.addHandler(handler)
