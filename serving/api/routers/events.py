"""``POST /v1/events``: purchases, sends, consent changes and session events that must take
effect at once."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from serving.api.deps import EventsWrite, NowDep, StateDep
from serving.api.realtime import RealtimeDep, realtime_lifespan
from serving.api.responses import json_response
from serving.api.schemas import EventsRequest, EventsResponse
from serving.online_intent import NO_RESCORE_EVENT_TYPES

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"], lifespan=realtime_lifespan)


@router.post("/events", response_model=EventsResponse)
def post_events(
    body: EventsRequest, _auth: EventsWrite, state: StateDep, now: NowDep, realtime: RealtimeDep
):
    """Store events in the online state store; answered only once they are on disk.

    One SQLite transaction (WAL, ``synchronous=FULL``): all events or none. An event whose
    ``event_id`` is already stored (a retry, also within the batch) is counted in
    ``duplicates`` and not stored again; events of an erased customer are not stored.
    The next recommendation call reads what was stored: a just-bought item is excluded
    by the purchase rule (durables for good), a just-sent item for the placement's
    ``exclude_sent_days``; a ``consent_update`` withdrawing (or giving) consent counts at
    once for recommendations and audience exports. Events without ``ts`` are stamped
    with the current time. Runs in the thread pool (SQLite write).

    Real-time intent: for every customer with a shop event in the batch (``page_view``,
    ``product_view``, ``add_to_cart``, ``remove_from_cart``, ``purchase``, ... -- any type
    but ``send`` and ``consent_update``) the session features and the conversion-intent
    score are recomputed from the champion before the call answers (events with ``ts``
    before now count), so the next ``GET /v1/customers/{id}/scores`` of any worker shows
    them, and a changed score is appended to the audience delta feed. A failed rescore is
    logged and leaves the previous score; the events stay stored. Header ``X-Rescored``:
    customers rescored.
    """
    records = [{**e.model_dump(exclude_none=True), "ts": e.ts or now} for e in body.events]
    counts = state.record_events(records, now)
    rescored = 0
    if realtime is not None and realtime.intent is not None and counts.stored:
        skip = NO_RESCORE_EVENT_TYPES
        ids = sorted({str(r["customer_id"]) for r in records if r["event_type"] not in skip})
        try:
            rescored = realtime.intent.rescore(ids, now).customers if ids else 0
        except Exception as exc:  # the events are stored; the score catches up on the next one
            log.error("real-time rescore failed: %s", type(exc).__name__)
    response = json_response(EventsResponse.model_validate(counts))
    response.headers["X-Rescored"] = str(rescored)
    return response
