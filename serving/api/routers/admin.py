"""``POST /v1/admin/reload`` (scope ``admin``): load new champion artifacts."""

from __future__ import annotations

from fastapi import APIRouter, Request

from serving.api.deps import Admin
from serving.api.responses import json_response
from serving.api.schemas import Reloaded

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/reload", response_model=Reloaded)
async def reload(_auth: Admin, request: Request):
    """Load the newest scores, shop context and champion recommender, then swap them in.

    Requests keep being answered while the new artifacts load (on a thread); each request
    is answered entirely from the old or entirely from the new set. This worker answers
    once it has swapped; the other workers follow within ``KLANTBEELD_API_RELOAD_POLL_S``
    seconds. A component that cannot be loaded is reported in ``problems`` (as by
    ``GET /v1/ready``); an invalid placements file keeps the old artifacts (422).
    """
    reloader = request.app.state.reloader
    art = await reloader.reload_all()
    return json_response(
        Reloaded(
            ready=not art.problems,
            problems=dict(art.problems),
            loaded_in_s=art.loaded_in_s,
            reloads=reloader.reloads,
        )
    )
