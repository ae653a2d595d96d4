"""Reusable dependencies as ``Annotated`` aliases; tests swap them with
``app.dependency_overrides[get_x] = ...``.

All are ``async def`` (no blocking work), so FastAPI calls them on the event loop instead
of a worker thread.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings
from serving.api.artifacts import (
    AUDIENCE,
    RECOMMENDER,
    SCORES,
    SHOP,
    Artifacts,
    RecommendationService,
)
from serving.api.audience import AudienceIndex
from serving.api.batcher import MicroBatcher
from serving.api.email_index import EmailIndex
from serving.api.errors import ForbiddenError, UnauthorizedError
from serving.api.keys import KeyStore
from serving.api.scores import ScoreIndex
from serving.state import OnlineStateStore


async def get_artifacts(request: Request) -> Artifacts:
    """The artifacts loaded at startup (``app.state.artifacts``)."""
    art = getattr(request.app.state, "artifacts", None)
    if art is None:
        raise NotTrainedError("the API has not finished loading its artifacts")
    return art


ArtifactsDep = Annotated[Artifacts, Depends(get_artifacts)]


async def get_api_settings(art: ArtifactsDep) -> Settings:
    """Settings the app was created with."""
    return art.settings


async def get_scores(art: ArtifactsDep) -> ScoreIndex:
    """Latest batch scores; 503 when there are none."""
    art.require(SCORES)
    if art.scores is None:
        raise NotTrainedError("scores not loaded")
    return art.scores


async def get_recommender(art: ArtifactsDep) -> RecommendationService:
    """Next-best-offers service; 503 without a shop (rule context). Without a trained
    recommender it serves the placements' popular fallback (``model is None``)."""
    if art.recommender is None:
        art.require(RECOMMENDER)
        raise NotTrainedError("recommender not loaded")
    return art.recommender


async def get_state(art: ArtifactsDep) -> OnlineStateStore:
    """Online state store (sends, purchases)."""
    return art.state


async def get_audience(art: ArtifactsDep) -> AudienceIndex:
    """Consent flags and hashed identifiers aligned with the scores; 503 when missing."""
    art.require(AUDIENCE)
    if art.audience is None:
        raise NotTrainedError("audience index not loaded")
    return art.audience


async def get_emails(art: ArtifactsDep) -> EmailIndex:
    """E-mail -> customer id index; 503 without the shop's customer table."""
    if art.emails is None:
        art.require(SHOP)
        raise NotTrainedError("customer table not loaded")
    return art.emails


async def get_batcher(request: Request) -> MicroBatcher:
    """Coalesces concurrent single-recipient recommendation requests (``app.state``)."""
    return request.app.state.batcher


_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)


async def get_key_store(request: Request) -> KeyStore:
    """The API key table (``app.state.keys``, from ``settings.resolved_api_keys_file``)."""
    return request.app.state.keys


async def get_key_scopes(
    request: Request, key: Annotated[str | None, Security(_api_key_header)]
) -> frozenset[str]:
    """Scopes of the request's ``X-API-Key``; 401 without a key or with an unknown one."""
    if not key:
        raise UnauthorizedError("missing X-API-Key header")
    scopes = (await get_key_store(request)).scopes_of(key)
    if scopes is None:
        raise UnauthorizedError("unknown or revoked API key")
    return scopes


KeyScopesDep = Annotated[frozenset[str], Depends(get_key_scopes)]


def require_scope(scope: str):
    """A dependency that answers 403 unless the request's key carries ``scope``.

    Declare it before a route's other dependencies: FastAPI resolves them in order, so a
    caller without the scope learns nothing (not even a 503) about the service's state.

    Parameters
    ----------
    scope : str
        One of :data:`serving.api.keys.SCOPES`.

    Returns
    -------
    Callable
        For ``Depends(...)`` (router ``dependencies=`` or an ``Annotated`` alias).
    """

    async def check(scopes: KeyScopesDep) -> None:
        if scope not in scopes:
            raise ForbiddenError(f"this API key lacks the {scope!r} scope")

    check.__name__ = f"require_{scope.replace(':', '_')}"
    return check


ScoresRead = Annotated[None, Depends(require_scope("scores:read"))]
RecommendationsRead = Annotated[None, Depends(require_scope("recommendations:read"))]
EventsWrite = Annotated[None, Depends(require_scope("events:write"))]
AudiencesExport = Annotated[None, Depends(require_scope("audiences:export"))]
Admin = Annotated[None, Depends(require_scope("admin"))]


async def get_now() -> datetime:
    """The reference instant of a request: the current time, naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


SettingsDep = Annotated[Settings, Depends(get_api_settings)]
ScoresDep = Annotated[ScoreIndex, Depends(get_scores)]
RecommenderDep = Annotated[RecommendationService, Depends(get_recommender)]
StateDep = Annotated[OnlineStateStore, Depends(get_state)]
AudienceDep = Annotated[AudienceIndex, Depends(get_audience)]
NowDep = Annotated[datetime, Depends(get_now)]
BatcherDep = Annotated[MicroBatcher, Depends(get_batcher)]
EmailsDep = Annotated[EmailIndex, Depends(get_emails)]

__all__ = [
    "Admin",
    "AudiencesExport",
    "EventsWrite",
    "KeyScopesDep",
    "RecommendationsRead",
    "ScoresRead",
    "get_key_scopes",
    "get_key_store",
    "require_scope",
    "ArtifactsDep",
    "AudienceDep",
    "BatcherDep",
    "EmailsDep",
    "NowDep",
    "RecommenderDep",
    "ScoresDep",
    "SettingsDep",
    "StateDep",
    "get_api_settings",
    "get_artifacts",
    "get_audience",
    "get_batcher",
    "get_emails",
    "get_now",
    "get_recommender",
    "get_scores",
    "get_state",
]
