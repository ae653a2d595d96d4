"""``GET /metrics``: the service's own request latency histogram and the served model
versions (``klantbeeld_model_info``), Prometheus text.

Needs a key with the ``admin`` scope (route names and volumes are operational detail),
unless ``KLANTBEELD_METRICS_PUBLIC=true`` opens it for a scraper on a private network.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader

from serving.api.deps import get_key_scopes, require_scope
from serving.api.metrics import render_model_info

router = APIRouter(tags=["metrics"])
_admin = require_scope("admin")


async def _metrics_access(
    request: Request,
    key: Annotated[str | None, Depends(APIKeyHeader(name="X-API-Key", auto_error=False))],
) -> None:
    if request.app.state.settings.metrics_public:
        return
    await _admin(await get_key_scopes(request, key))


@router.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(_metrics_access)])
async def metrics(request: Request) -> PlainTextResponse:
    """Latency histogram per route template, summed over all worker processes, and
    ``klantbeeld_model_info{model,version,alias} 1`` for every model version this worker
    serves (rebuilt by ``POST /v1/admin/reload``)."""
    art = getattr(request.app.state, "artifacts", None)  # None while still loading
    models = art.models if art is not None else ()
    text = request.app.state.metrics.render() + render_model_info(models)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
