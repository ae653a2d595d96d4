"""Audience routes: configured audiences as hashed ad-platform files, and score-threshold
customer-id lists for internal use. Consent is enforced on both."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from serving.api.audience_online import online_audience
from serving.api.deps import AudienceDep, AudiencesExport, SettingsDep, StateDep
from serving.api.errors import NotFoundError
from serving.audiences.definitions import load_audiences
from serving.audiences.export import Layout, csv_lines, id_csv_lines, select_members
from serving.audiences.index import Consent

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])


@router.get("/{name}/export", response_class=StreamingResponse)
async def export(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    _auth: AudiencesExport,
    audience: AudienceDep,
    settings: SettingsDep,
    state: StateDep,
    layout: Layout = "google",
):
    """A configured audience (``likely_buyers``, ``churn_risk``, ...) as SHA-256 hashed
    e-mail and phone in the Google Customer Match (``Email,Phone``) or Meta Custom
    Audiences (``email,phone``) layout; the same selection as ``klantbeeld audience
    export``: ads consent only (consent changed through ``POST /v1/events`` counts at
    once), erased customers, obviously fake contact data and the holdout left out.

    Headers ``X-Audience-Size`` (rows), ``X-Audience-Holdout`` (held-out members),
    ``X-Audience-Threshold``. 404 for an unknown audience.
    """
    audiences = load_audiences(settings.audiences_file)
    if name not in audiences:
        raise NotFoundError(f"unknown audience {name!r}; defined: {', '.join(sorted(audiences))}")
    audience = online_audience(audience, state)
    sel = select_members(audience, audiences[name], settings.audience_holdout_share)
    return StreamingResponse(
        csv_lines(audience, sel.rows, layout),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="audience-{name}-{layout}.csv"',
            "X-Audience-Size": str(len(sel.rows)),
            "X-Audience-Holdout": str(len(sel.holdout_rows)),
            "X-Audience-Threshold": f"{sel.threshold:.6f}",
        },
    )


@router.get("/{model}", response_class=StreamingResponse)
async def audience(
    model: Annotated[str, Path(min_length=1, max_length=64)],
    _auth: AudiencesExport,
    audience: AudienceDep,
    state: StateDep,
    min_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.5,
    consent: Consent = "ads",
):
    """Customer ids whose ``model`` score is at least ``min_score`` and who gave
    ``consent`` (``ads`` or ``email``): no consent, no membership. Consent changed through
    ``POST /v1/events`` counts at once; erased customers are never members. For the CDP
    itself; hashed files for ad platforms come from ``/v1/audiences/{name}/export``.

    CSV, streamed, one ``customer_id`` a line. Header ``X-Audience-Size``. 404 for a model
    without scores.
    """
    if model not in audience.scores.models:
        known = ", ".join(audience.scores.models)
        raise NotFoundError(f"no scores for model {model!r}; scored models: {known}")
    audience = online_audience(audience, state)
    rows = audience.members(model, min_score, consent)
    return StreamingResponse(
        id_csv_lines(audience, rows),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="audience-{model}-{consent}.csv"',
            "X-Audience-Size": str(len(rows)),
        },
    )
