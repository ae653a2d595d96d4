"""``GET /v1/audiences/{name}/changes``: the audience delta feed (who entered or left)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from klantbeeld.errors import ConfigError, NotTrainedError
from serving.api.audience_online import online_audience
from serving.api.deps import AudienceDep, AudiencesExport, SettingsDep, StateDep
from serving.api.errors import NotFoundError
from serving.api.realtime import RealtimeDep
from serving.api.responses import json_response
from serving.audiences.definitions import load_audiences
from serving.online_changes import audience_changes

router = APIRouter(prefix="/v1/audiences", tags=["audiences"])

#: Change-log rows read per call at most (``more`` tells there are further rows).
MAX_ROWS = 50_000
MAX_CURSOR = 2**63 - 1


class MemberChange(BaseModel):
    """One customer who entered or left the audience."""

    customer_id: str
    email_sha256: str | None = Field(None, description="SHA-256 of the normalised e-mail.")
    phone_sha256: str | None = Field(None, description="SHA-256 of the E.164 phone (with +).")
    reason: str = Field(description="score, consent or erasure: what changed the membership.")


class AudienceChanges(BaseModel):
    """Entered and left members since the cursor, and the cursor to pass next time."""

    audience: str
    score: str
    threshold: float = Field(ge=0.0, le=1.0)
    since: int = Field(ge=0, description="Cursor the answer starts after.")
    cursor: str = Field(description="Pass as ?since= on the next call.")
    more: bool = Field(description="More change-log rows wait beyond this answer.")
    entered: list[MemberChange]
    left: list[MemberChange]


def parse_since(since: str | None, realtime) -> int:
    """``since`` as a change-log cursor: digits are a cursor, otherwise an ISO instant
    (naive = UTC) is turned into the cursor of that instant; None means from the start."""
    if since is None or since == "":
        return 0
    if since.isascii() and since.isdigit():
        if int(since) > MAX_CURSOR:
            raise ConfigError(f"since must be a cursor up to {MAX_CURSOR}, got {since!r}")
        return int(since)
    try:
        when = datetime.fromisoformat(since)
    except ValueError as exc:
        raise ConfigError(f"since must be a cursor or an ISO 8601 instant, got {since!r}") from exc
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    return realtime.store.cursor_at(when)


@router.get("/{name}/changes", response_model=AudienceChanges)
async def audience_delta(
    name: Annotated[str, Path(min_length=1, max_length=64)],
    _auth: AudiencesExport,
    audience: AudienceDep,
    settings: SettingsDep,
    state: StateDep,
    realtime: RealtimeDep,
    since: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ROWS)] = MAX_ROWS,
):
    """Customers who entered or left audience ``name`` since ``since`` (a cursor from the
    previous answer, or an ISO 8601 instant; absent: since the batch scores).

    A session event that moves a customer's conversion intent over or under the
    audience's threshold, an ads-consent change and an erasure all count; membership is
    the export's (``/v1/audiences/{name}/export``): score at or above the threshold the
    export applies to the batch scores, ads consent, plausible contact data, an
    identifier, not in the holdout. Identifiers are SHA-256 hashed (none for an erased
    customer). 404 for an unknown audience; 422 for an unusable ``since``.
    """
    audiences = load_audiences(settings.audiences_file)
    if name not in audiences:
        raise NotFoundError(f"unknown audience {name!r}; defined: {', '.join(sorted(audiences))}")
    if realtime is None:
        raise NotTrainedError("the online store is not loaded")
    definition = audiences[name]
    if definition.score not in audience.scores.models:
        raise NotFoundError(f"audience {name!r} uses {definition.score!r}, which has no scores")
    cursor = parse_since(since, realtime)
    rows = realtime.store.changes_after(cursor, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    ids = sorted({r.customer_id for r in rows})
    online = realtime.store.scores_of(ids, definition.score, audience.scores.as_of) if ids else {}
    delta = audience_changes(
        audience,
        online_audience(audience, state),
        definition,
        settings.audience_holdout_share,
        rows,
        {cid: o.score for cid, o in online.items()},
        cursor,
        audience.scores.as_of,
    )
    body = AudienceChanges(
        audience=name,
        score=definition.score,
        threshold=delta.threshold,
        since=cursor,
        cursor=str(delta.cursor),
        more=more,
        entered=[MemberChange(**m.__dict__) for m in delta.entered],
        left=[MemberChange(**m.__dict__) for m in delta.left],
    )
    return json_response(body)
