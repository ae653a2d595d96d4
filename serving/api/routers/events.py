"""``POST /v1/events``: purchases, sends and consent changes that must take effect at once."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.deps import EventsWrite, NowDep, StateDep
from serving.api.responses import json_response
from serving.api.schemas import EventsRequest, EventsResponse

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", response_model=EventsResponse)
def post_events(body: EventsRequest, _auth: EventsWrite, state: StateDep, now: NowDep):
    """Store events in the online state store; answered only once they are on disk.

    One SQLite transaction (WAL, ``synchronous=FULL``): all events or none. An event whose
    ``event_id`` is already stored (a retry, also within the batch) is counted in
    ``duplicates`` and not stored again; events of an erased customer are not stored.
    The next recommendation call reads what was stored: a just-bought item is excluded
    by the purchase rule (durables for good), a just-sent item for the placement's
    ``exclude_sent_days``; a ``consent_update`` withdrawing (or giving) consent counts at
    once for recommendations and audience exports. Events without ``ts`` are stamped
    with the current time. Runs in the thread pool (SQLite write).
    """
    records = [{**e.model_dump(exclude_none=True), "ts": e.ts or now} for e in body.events]
    counts = state.record_events(records, now)
    return json_response(EventsResponse.model_validate(counts))
