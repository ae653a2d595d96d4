"""All routers of the API, gathered in one place."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routers import (
    admin,
    audience_changes,
    audiences,
    customers,
    events,
    health,
    metrics,
    recipients,
    recommendations,
)
from serving.api.schemas import ERROR_RESPONSES

api_router = APIRouter()
for _module in (health, customers, recipients, recommendations, events, audiences, admin, metrics):
    api_router.include_router(_module.router, responses=ERROR_RESPONSES)
api_router.include_router(audience_changes.router, responses=ERROR_RESPONSES)

__all__ = ["api_router"]
