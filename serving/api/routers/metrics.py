"""``GET /metrics``: the service's own request latency histogram (Prometheus text).

Needs a key with the ``admin`` scope (route names and volumes are operational detail),
unless ``KLANTBEELD_METRICS_PUBLIC=true`` opens it for a scraper on a private network.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader

from serving.api.deps import get_key_scopes, require_scope

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
    """Latency histogram per route template, summed over all worker processes."""
    return PlainTextResponse(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4"
    )
