"""``POST /v1/events``: purchases and sends that must take effect at once."""

from __future__ import annotations

import pandas as pd
from fastapi import APIRouter

from features import contract as c
from serving.api.deps import EventsWrite, NowDep, StateDep
from serving.api.responses import json_response
from serving.api.schemas import EventsRequest, EventsResponse

router = APIRouter(prefix="/v1", tags=["events"])


@router.post("/events", response_model=EventsResponse)
def post_events(body: EventsRequest, _auth: EventsWrite, state: StateDep, now: NowDep):
    """Store purchases and sends in the online state store.

    The next recommendation call reads them: a just-bought item is excluded by the
    purchase rule (durables for good), a just-sent item for the placement's
    ``exclude_sent_days``. Events without ``ts`` are stamped with the current time.
    Runs in the thread pool (SQLite write).
    """
    buys = [(e.customer_id, e.item_id, e.ts or now) for e in body.events if e.type == "purchase"]
    sends = [
        (e.customer_id, e.item_id, e.placement, e.ts or now)
        for e in body.events
        if e.type == "send"
    ]
    n_buys = n_sends = 0
    if buys:
        n_buys = state.record_purchases(
            pd.DataFrame(buys, columns=[c.CUSTOMER_ID, c.ITEM_ID, c.TS])
        )
    if sends:
        n_sends = state.record_sends(
            pd.DataFrame(sends, columns=[c.CUSTOMER_ID, c.ITEM_ID, c.PLACEMENT, c.TS])
        )
    return json_response(EventsResponse(purchases=n_buys, sends=n_sends))
