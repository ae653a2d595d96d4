"""``POST /v1/recommendations/batch``: next-best-offers for up to 1,000 recipients."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import BatcherDep, NowDep, RecommendationsRead, RecommenderDep
from serving.api.responses import json_response
from serving.api.schemas import BatchRequest, BatchResponse, RecipientRecommendations

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])


@router.post("/batch", response_model=BatchResponse)
async def batch_recommendations(
    body: BatchRequest,
    _auth: RecommendationsRead,
    recommender: RecommenderDep,
    batcher: BatcherDep,
    now: NowDep,
):
    """One result per distinct recipient, in request order (one vectorised pass).

    Recipients who may not receive the placement (no consent, unknown customer, empty
    cart) get ``eligible: false`` with the reason. With ``record_sends`` the returned items
    are stored as sent at once. Runs on the worker's recommendation thread (it may take
    hundreds of ms), so the event loop keeps serving other requests meanwhile.
    """
    results = await batcher.call(
        recommender.recommend, body.customer_ids, body.placement, n=body.n, now=now
    )
    recorded = 0
    if body.record_sends:
        recorded = await batcher.call(recommender.record_sends, results, body.placement, now)
    loaded = recommender.model is not None
    out = [RecipientRecommendations.of(r, loaded) for r in results]
    return json_response(
        BatchResponse(
            placement=body.placement,
            n_recipients=len(out),
            n_eligible=sum(r.eligible for r in out),
            n_sends_recorded=recorded,
            results=out,
        )
    )
