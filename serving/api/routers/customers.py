"""Per-customer resources: batch scores and next-best-offers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from serving.api.content_html import (
    HTML_RESPONSES,
    ContentDep,
    FormatQuery,
    recommendations_response,
)
from serving.api.deps import (
    Admin,
    BatcherDep,
    NowDep,
    RecommendationsRead,
    RecommenderDep,
    ScoresDep,
    ScoresRead,
    StateDep,
)
from serving.api.errors import NotFoundError
from serving.api.realtime import RealtimeDep
from serving.api.responses import json_response
from serving.api.schemas import (
    MAX_ITEMS,
    CustomerScores,
    Erasure,
    ModelScore,
    RecipientRecommendations,
)
from serving.api.scores import with_online

router = APIRouter(prefix="/v1/customers", tags=["customers"])

CustomerIdPath = Annotated[str, Path(min_length=1, max_length=128)]


@router.get("/{customer_id}/scores", response_model=CustomerScores)
async def customer_scores(
    customer_id: CustomerIdPath,
    _auth: ScoresRead,
    scores: ScoresDep,
    state: StateDep,
    realtime: RealtimeDep,
):
    """Every model's calibrated score, model version and top-3 explanations.

    Conversion intent rescored from session events posted since the batch (``POST
    /v1/events``, any worker) replaces the batch score. 404 when the customer is not in
    the latest batch scores, or was erased.
    """
    row = scores.position(customer_id)
    if row < 0 or state.erased([customer_id]):
        raise NotFoundError(f"customer {customer_id!r} has no scores (as_of {scores.as_of})")
    batch = scores.scores_at(row)
    if realtime is not None:
        batch = with_online(batch, realtime.store.customer_scores(customer_id, scores.as_of))
    out = {
        s.model: ModelScore(
            score=s.score, model_version=s.model_version, top_up=s.top_up, top_down=s.top_down
        )
        for s in batch
    }
    values = scores.values_at(row) or None
    return json_response(
        CustomerScores(customer_id=customer_id, as_of=scores.as_of, scores=out, values=values)
    )


@router.get(
    "/{customer_id}/recommendations",
    response_model=RecipientRecommendations,
    responses=HTML_RESPONSES,
)
async def customer_recommendations(
    customer_id: CustomerIdPath,
    _auth: RecommendationsRead,
    recommender: RecommenderDep,
    batcher: BatcherDep,
    now: NowDep,
    content: ContentDep,
    placement: Annotated[str, Query(min_length=1, max_length=64)] = "newsletter",
    n: Annotated[int | None, Query(ge=1, le=MAX_ITEMS)] = None,
    fmt: FormatQuery = "json",
):
    """Next-best-offers of one customer for a placement (business rules and consent
    applied). A customer who may not receive the placement gets ``eligible: false`` and
    a reason -- never an error, also for unknown customers. 422 for an unknown placement.
    Concurrent requests are computed together (:mod:`serving.api.batcher`).
    ``format=html`` answers the placement's content block as ``text/html``
    (:mod:`serving.api.content_html`).
    """
    result = await batcher.recommend(recommender, customer_id, placement, n, now)
    body = RecipientRecommendations.of(result, recommender.model is not None)
    return recommendations_response(body, fmt, content)


@router.delete("/{customer_id}", response_model=Erasure)
def erase_customer(customer_id: CustomerIdPath, _auth: Admin, state: StateDep, now: NowDep):
    """Erasure (GDPR/AVG art. 17): remove the customer from every store the service controls.

    Deletes the customer's events, purchases, sends and online consent from the state
    store and puts the id on its erasure list, which every later answer consults: scores
    answer 404, recommendations give the unknown-recipient result (popular fallback, or
    ``unknown_customer`` on a channel that needs consent), audience exports and the
    e-mail look-up leave the customer out, and events posted for the id are not stored.
    The batch inputs (the CDP's customer table, the scores file) are the CDP's to erase;
    the list keeps the customer out of everything served from them until then. Repeating
    the call is harmless (``rows_deleted`` 0). Runs in the thread pool (SQLite write).
    """
    n = state.erase_customer(customer_id, now)
    return json_response(Erasure(customer_id=customer_id, erased=True, rows_deleted=n))
