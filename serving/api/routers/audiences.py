"""``GET /v1/audiences/{model}``: score-threshold audiences with consent, as streamed CSV."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from serving.api.audience import Consent
from serving.api.audience_online import online_audience
from serving.api.deps import AudienceDep, AudiencesExport, StateDep
from serving.api.errors import NotFoundError

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])


@router.get("/{model}", response_class=StreamingResponse)
async def audience(
    model: Annotated[str, Path(min_length=1, max_length=64)],
    _auth: AudiencesExport,
    audience: AudienceDep,
    state: StateDep,
    min_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
    consent: Consent = "ads",
    hashed: bool = False,
):
    """Customers whose ``model`` score is at least ``min_score`` and who gave ``consent``
    (``ads`` or ``email``): no consent, no membership. Consent changed through
    ``POST /v1/events`` counts at once; erased customers are never members.

    CSV, streamed: ``customer_id`` per line, or with ``hashed=true`` ``email_sha256,
    phone_sha256`` (SHA-256 of the trimmed lower-cased e-mail and of the E.164 phone;
    members with neither are left out). Header ``X-Audience-Size``: members counted
    before that. 404 for a model without scores.
    """
    if model not in audience.scores.models:
        known = ", ".join(audience.scores.models)
        raise NotFoundError(f"no scores for model {model!r}; scored models: {known}")
    audience = online_audience(audience, state)
    rows = audience.members(model, min_score, consent)
    name = f"audience-{model}-{consent}{'-hashed' if hashed else ''}.csv"
    return StreamingResponse(
        audience.csv_lines(rows, hashed),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Audience-Size": str(len(rows)),
        },
    )
