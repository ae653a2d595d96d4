"""Request and response models of the API, with bounds (one family per resource)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from serving.rules import POPULAR_IN

#: Recipients per batch call (ARCHITECTURE §7: a batch of 1,000 in <= 250 ms).
MAX_BATCH = 1_000
#: Events per ``POST /v1/events`` call.
MAX_EVENTS = 10_000
MAX_ITEMS = 100

CustomerId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ItemId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
PlacementName = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- errors --------------------------------------------------------------------------------
class ErrorBody(_Out):
    """Every error: ``detail`` a message and ``type`` its kind (see docs/api.md); FastAPI's
    own 422 for a field out of bounds carries a list of field errors instead."""

    detail: str | list[dict[str, Any]]
    type: str | None = Field(
        None,
        description="unauthorized, forbidden, not_found, payload_too_large, "
        "invalid_argument, not_available, internal_error",
    )


#: Error responses documented on every route (OpenAPI).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (401, "No X-API-Key, or an unknown or revoked key."),
        (403, "The key lacks the route's scope."),
        (404, "Unknown customer or model."),
        (413, "Request body too large."),
        (422, "A parameter or body field out of bounds, or an unusable argument."),
        (500, "Internal error (generic body; the cause is in the server log)."),
        (503, "An artifact the route needs is not loaded."),
    )
}


# -- health --------------------------------------------------------------------------------
class ComponentStatus(_Out):
    """One loaded artifact: ``ok`` and what it is, or why it is missing."""

    ok: bool
    detail: str


class Ready(_Out):
    """Readiness: ``ready`` only when every model and artifact is loaded."""

    ready: bool
    problems: dict[str, str] = Field(
        default_factory=dict, description="Component -> why it is not loaded."
    )


class Reloaded(_Out):
    """Result of ``POST /v1/admin/reload`` (this worker; the others follow)."""

    ready: bool
    problems: dict[str, str] = Field(default_factory=dict)
    loaded_in_s: float = Field(ge=0.0, description="Seconds the new artifacts took to load.")
    reloads: int = Field(ge=1, description="Reloads of this worker since it started.")


class Health(_Out):
    """``ok`` when every artifact is loaded, else ``degraded`` (routes needing a missing
    artifact answer 503)."""

    status: Literal["ok", "degraded"]
    components: dict[str, ComponentStatus]


# -- scores --------------------------------------------------------------------------------
class ModelScore(_Out):
    """One model's score of one customer, from the latest batch scoring run."""

    score: float | None = Field(None, ge=0.0, le=1.0, description="Calibrated probability.")
    model_version: int | None = Field(None, ge=0, description="Registered model version.")
    top_up: list[str] = Field(
        default_factory=list, max_length=3, description="Features pushing the score up most."
    )
    top_down: list[str] = Field(
        default_factory=list, max_length=3, description="Features pushing the score down most."
    )


class CustomerScores(_Out):
    """Every model's score of one customer."""

    customer_id: str
    as_of: str | None = Field(None, description="Snapshot time T of the batch scores.")
    scores: dict[str, ModelScore]
    values: dict[str, float | None] | None = Field(
        None,
        exclude_if=lambda v: v is None,
        description="CLV champion's expected orders and revenue (EUR) in the H days after T: "
        "expected_purchases_<H>d, clv_<H>d (null: no order before T); absent without one.",
    )


class Erasure(_Out):
    """Result of ``DELETE /v1/customers/{customer_id}``."""

    customer_id: str
    erased: bool = Field(description="The id is on the erasure list.")
    rows_deleted: int = Field(ge=0, description="Rows deleted from the state store.")


# -- recommendations -----------------------------------------------------------------------
class RecommendedItem(_Out):
    """One item for a recipient, with the content fields a template needs."""

    rank: int = Field(ge=1, description="1 = best.")
    item_id: str
    score: float
    reason: str = Field(
        description="for_you, bought_before, viewed, similar_to:<item_id>, "
        "popular_in:<segment>, in_cart"
    )
    title: str | None = None
    url: str | None = None
    image_url: str | None = None
    price: float | None = Field(None, ge=0.0, description="EUR.")
    category: str | None = None


class RecipientRecommendations(_Out):
    """Recommendations for one recipient; ``eligible: false`` with ``reason`` when nothing
    may be sent (``no_email_consent``, ``unknown_customer``, ``empty_cart``, ``no_items``)."""

    customer_id: str
    placement: str
    eligible: bool
    reason: str | None = None
    content_block: str | None = None
    fallback: bool = Field(
        False,
        description="True when the items are the placement's popular fallback, not "
        "personalised: the recommender is not loaded (see GET /v1/ready) or the recipient "
        "is unknown to it.",
    )
    items: list[RecommendedItem] = Field(default_factory=list)

    @classmethod
    def of(cls, result: object, model_loaded: bool) -> RecipientRecommendations:
        """From a :class:`serving.next_best_offer.RecipientResult`, with ``fallback`` set."""
        out = cls.model_validate(result)
        popular = bool(out.items) and all(i.reason.startswith(POPULAR_IN) for i in out.items)
        if not model_loaded or popular:
            out.fallback = True
        return out


class EmailRecommendations(RecipientRecommendations):
    """Recommendations for a recipient looked up by e-mail address; ``customer_id`` is
    ``null`` when no (non-erased) customer has the address (then ``reason`` is
    ``unknown_customer`` on a channel that needs consent, else the popular fallback)."""

    customer_id: str | None  # type: ignore[assignment]


class BatchRequest(_In):
    """Recipients of one placement, for an ESP at send time."""

    placement: PlacementName
    customer_ids: list[CustomerId] = Field(min_length=1, max_length=MAX_BATCH)
    n: int | None = Field(
        None,
        ge=1,
        le=MAX_ITEMS,
        description="Items per recipient; default the placement's n_items.",
    )
    record_sends: bool = Field(
        False,
        description="Record the returned items as sent now (they are then excluded "
        "from this customer's next recommendations for the placement's exclude_sent_days).",
    )


class BatchResponse(_Out):
    """One result per distinct recipient, in request order."""

    placement: str
    n_recipients: int = Field(ge=0)
    n_eligible: int = Field(ge=0)
    n_sends_recorded: int = Field(0, ge=0)
    results: list[RecipientRecommendations]


# -- events --------------------------------------------------------------------------------
Text = Annotated[str, StringConstraints(min_length=1, max_length=128)]
EventType = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")
]
#: Event types that need an ``item_id``.
ITEM_EVENTS = ("purchase", "send")


class Event(_In):
    """One event in the data contract's event columns (ARCHITECTURE §2), plus ``event_id``.

    ``purchase`` excludes the item from the customer's next recommendations, ``send``
    excludes it for the placement's ``exclude_sent_days``, ``consent_update`` (with
    ``consent_email`` and/or ``consent_ads``) changes consent at once. Every other type
    (``product_view``, ``email_click``, ...) is stored in the event log.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "order-981-line-1",
                    "event_type": "purchase",
                    "customer_id": "C1",
                    "item_id": "I1",
                    "ts": "2026-11-01T09:30:00+01:00",
                    "quantity": 1,
                    "value": 30.0,
                    "order_id": "981",
                },
                {"event_type": "consent_update", "customer_id": "C1", "consent_email": False},
            ]
        },
    )

    event_id: Text | None = Field(
        None, description="Idempotency key: an event with an id already stored is skipped."
    )
    event_type: EventType = Field(
        description="purchase, send, consent_update, or any data-contract event type."
    )
    customer_id: CustomerId
    ts: datetime | None = Field(None, description="When (ISO 8601; naive = UTC); default now.")
    item_id: ItemId | None = Field(None, description="Required for purchase and send.")
    quantity: float | None = Field(None, ge=0.0)
    value: float | None = Field(None, description="Money, EUR.")
    channel: Text | None = None
    session_id: Text | None = None
    campaign_id: Text | None = None
    order_id: Text | None = None
    placement: PlacementName | None = Field(None, description="Sends: the placement.")
    consent_email: bool | None = Field(None, description="consent_update: e-mail consent.")
    consent_ads: bool | None = Field(None, description="consent_update: ads consent.")

    @field_validator("ts")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is not None:
            v = v.astimezone(UTC).replace(tzinfo=None)
        return v

    @model_validator(mode="after")
    def _fields_of_the_type(self) -> Event:
        if self.event_type in ITEM_EVENTS and self.item_id is None:
            raise ValueError(f"item_id is required for event_type {self.event_type!r}")
        has_consent = self.consent_email is not None or self.consent_ads is not None
        if self.event_type == "consent_update" and not has_consent:
            raise ValueError("consent_update needs consent_email and/or consent_ads")
        if self.event_type != "consent_update" and has_consent:
            raise ValueError("consent_email / consent_ads belong to event_type 'consent_update'")
        return self


class EventsRequest(_In):
    """Up to 10,000 events, stored atomically (all or none) before the call answers."""

    events: list[Event] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsResponse(_Out):
    """What was stored (``received = stored + duplicates + erased``)."""

    received: int = Field(ge=0)
    stored: int = Field(ge=0, description="Events newly written.")
    duplicates: int = Field(ge=0, description="Skipped: their event_id was already stored.")
    erased: int = Field(ge=0, description="Skipped: their customer was erased.")
    purchases: int = Field(ge=0)
    sends: int = Field(ge=0)
    consent_updates: int = Field(ge=0)


__all__ = [
    "BatchRequest",
    "BatchResponse",
    "ComponentStatus",
    "CustomerScores",
    "Event",
    "EventsRequest",
    "ERROR_RESPONSES",
    "EmailRecommendations",
    "ErrorBody",
    "Erasure",
    "EventsResponse",
    "Health",
    "Ready",
    "Reloaded",
    "MAX_BATCH",
    "MAX_EVENTS",
    "ModelScore",
    "RecipientRecommendations",
    "RecommendedItem",
]
