"""The FastAPI application: :func:`create_app` builds it, the lifespan loads artifacts.

Nothing happens at import. ``create_app(settings)`` wires routers, error handlers and the
latency middleware; when the app starts (uvicorn, or ``with TestClient(app)``) the lifespan
calls :func:`serving.api.artifacts.load_artifacts` once per worker process and keeps the
result in ``app.state.artifacts``. Routes reach it only through :mod:`serving.api.deps`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.routing import Route

from klantbeeld.settings import Settings, get_settings
from serving.api.artifacts import load_artifacts
from serving.api.batcher import MicroBatcher
from serving.api.content_html import ContentRenderer
from serving.api.errors import install_error_handlers
from serving.api.keys import KeyStore
from serving.api.limits import install_limits
from serving.api.metrics import LatencyHistogram, LatencyMiddleware
from serving.api.reload import Reloader
from serving.api.routes import api_router

log = logging.getLogger(__name__)

API_VERSION = "1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the klantbeeld API.

    Parameters
    ----------
    settings : Settings, optional
        Default :func:`klantbeeld.settings.get_settings` (``KLANTBEELD_*`` environment;
        how ``klantbeeld serve`` hands its settings to uvicorn worker processes).

    Returns
    -------
    FastAPI
        Artifacts load at startup (lifespan); ``app.state.metrics`` holds the latency
        histogram served at ``GET /metrics``.
    """
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.artifacts = load_artifacts(settings)
        app.state.reloader = Reloader(app.state, settings)
        watch = asyncio.create_task(app.state.reloader.watch(settings.api_reload_poll_s))
        try:
            yield
        finally:
            await Reloader.stop(watch)
            await app.state.batcher.close()

    app = FastAPI(
        title="klantbeeld",
        version=API_VERSION,
        summary="Scores, next-best-offers, events and audiences per customer.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = KeyStore(settings.resolved_api_keys_file)
    app.state.batcher = MicroBatcher()
    app.state.content = ContentRenderer.from_settings(settings)  # ConfigError: bad template
    app.include_router(api_router)
    install_error_handlers(app)
    install_limits(app, settings)
    app.state.metrics = LatencyHistogram(_route_keys(app), settings.metrics_dir)
    app.add_middleware(LatencyMiddleware, histogram=app.state.metrics)
    return app


def _route_keys(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route: the API's from its OpenAPI paths (routes of
    included routers are not listed flat in ``app.routes``), plus the docs pages."""
    keys = [
        (method.upper(), path)
        for path, ops in app.openapi().get("paths", {}).items()
        for method in ops
    ]
    for route in app.routes:
        if isinstance(route, Route) and route.methods:
            keys += [(m, route.path) for m in route.methods]
    return keys


__all__ = ["create_app"]
