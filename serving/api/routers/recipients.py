"""``GET /v1/recipients/recommendations?email=...``: next-best-offers by e-mail address."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from klantbeeld.errors import ConfigError
from serving.api.audience import normalise_email
from serving.api.content_html import (
    HTML_RESPONSES,
    ContentDep,
    FormatQuery,
    recommendations_response,
)
from serving.api.deps import (
    BatcherDep,
    EmailsDep,
    NowDep,
    RecommendationsRead,
    RecommenderDep,
    StateDep,
)
from serving.api.schemas import MAX_ITEMS, EmailRecommendations, RecipientRecommendations
from serving.online_overrides import UNKNOWN_RECIPIENT

router = APIRouter(prefix="/v1/recipients", tags=["recommendations"])


@router.get("/recommendations", response_model=EmailRecommendations, responses=HTML_RESPONSES)
async def recipient_recommendations(
    _auth: RecommendationsRead,
    recommender: RecommenderDep,
    emails: EmailsDep,
    state: StateDep,
    batcher: BatcherDep,
    now: NowDep,
    content: ContentDep,
    email: Annotated[str, Query(min_length=3, max_length=320, examples=["ann@example.com"])],
    placement: Annotated[str, Query(min_length=1, max_length=64)] = "newsletter",
    n: Annotated[int | None, Query(ge=1, le=MAX_ITEMS)] = None,
    fmt: FormatQuery = "json",
):
    """Next-best-offers of the customer with this e-mail address (trimmed and lower-cased
    before the look-up), exactly as ``GET /v1/customers/{id}/recommendations`` answers
    for that customer. An address no customer has -- or an erased customer's -- gets the
    unknown-recipient answer with ``customer_id: null``. 422 when ``email`` is not an
    address. The address is never logged (the access log is off; metrics and error logs
    name the route template only). ``format=html`` answers the placement's content block
    as ``text/html`` (:mod:`serving.api.content_html`).
    """
    if normalise_email(email) is None:
        raise ConfigError("email is not an e-mail address (expected local-part@domain)")
    customer_id = emails.customer_id(email)
    if customer_id is not None and state.erased([customer_id]):
        customer_id = None
    asked = UNKNOWN_RECIPIENT if customer_id is None else customer_id
    result = await batcher.recommend(recommender, asked, placement, n, now)
    out = RecipientRecommendations.of(result, recommender.model is not None)
    body = EmailRecommendations.model_validate({**out.model_dump(), "customer_id": customer_id})
    return recommendations_response(body, fmt, content)
