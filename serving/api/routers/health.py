"""``GET /v1/health`` (and ``/health``): liveness and which artifacts are loaded;
``GET /v1/ready``: readiness (200 only when every model is loaded). Both open, no API key."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.artifacts import AUDIENCE, RECOMMENDER, SCORES, SHOP
from serving.api.deps import ArtifactsDep
from serving.api.responses import json_response
from serving.api.schemas import ComponentStatus, Health, Ready

router = APIRouter(tags=["health"])


@router.get("/v1/health", response_model=Health)
@router.get("/health", response_model=Health)
async def health(art: ArtifactsDep):
    """Liveness and readiness: 200 always; ``status`` is ``degraded`` when an artifact is
    missing (the routes needing it answer 503 with the reason)."""
    comps: dict[str, ComponentStatus] = {}
    for name in (SCORES, SHOP, RECOMMENDER, AUDIENCE):
        if name in art.problems:
            comps[name] = ComponentStatus(ok=False, detail=art.problems[name])
    if art.scores is not None:
        comps[SCORES] = ComponentStatus(
            ok=True,
            detail=f"as_of {art.scores.as_of}, {len(art.scores)} customers, "
            f"models {', '.join(art.scores.models)}",
        )
    if art.recommender is not None:
        ctx = art.recommender.context
        comps[SHOP] = ComponentStatus(
            ok=True,
            detail=f"context as of {ctx.now:%Y-%m-%d %H:%M}, {len(ctx.customer_index)} "
            f"customers, {ctx.n_items} items",
        )
        if art.recommender.model is not None:
            comps[RECOMMENDER] = ComponentStatus(
                ok=True, detail=f"placements {', '.join(art.placements.names)}"
            )
    if art.audience is not None:
        comps[AUDIENCE] = ComponentStatus(ok=True, detail="consent and hashed identifiers")
    status = "ok" if all(c.ok for c in comps.values()) else "degraded"
    return json_response(Health(status=status, components=comps))


@router.get(
    "/v1/ready",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Not ready; `problems` says why."}},
)
async def ready(art: ArtifactsDep):
    """Readiness probe: 200 when scores, shop context, recommender and audience index are
    all loaded; 503 with the reason per missing or unreadable component otherwise (the
    service still answers: recommendations with the placements' popular fallback)."""
    body = Ready(ready=not art.problems, problems=dict(art.problems))
    return json_response(body, status_code=200 if body.ready else 503)
