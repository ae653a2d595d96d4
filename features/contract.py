"""The data contract: table names, column names and expected types, in one place.

Every other module refers to these constants instead of spelling column names.
See ``docs/data-contract.md`` for the contract in words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Table names -----------------------------------------------------------------
CUSTOMERS = "customers"
ITEMS = "items"
EVENTS = "events"
SENDS = "sends"
TABLES = (CUSTOMERS, ITEMS, EVENTS, SENDS)
REQUIRED_TABLES = (CUSTOMERS, ITEMS, EVENTS)

# Column names ----------------------------------------------------------------
CUSTOMER_ID = "customer_id"
CREATED_AT = "created_at"
EMAIL = "email"
PHONE = "phone"
BIRTH_DATE = "birth_date"
GENDER = "gender"
POSTCODE = "postcode"
CITY = "city"
CONSENT_EMAIL = "consent_email"
CONSENT_ADS = "consent_ads"

ITEM_ID = "item_id"
TITLE = "title"
CATEGORY = "category"
BRAND = "brand"
PRICE = "price"
URL = "url"
IMAGE_URL = "image_url"
ACTIVE = "active"
REPURCHASABLE = "repurchasable"
DURABLE = "durable"

TS = "ts"
EVENT_TYPE = "event_type"
QUANTITY = "quantity"
VALUE = "value"
CHANNEL = "channel"
SESSION_ID = "session_id"
CAMPAIGN_ID = "campaign_id"
ORDER_ID = "order_id"
PLACEMENT = "placement"

# Event types -----------------------------------------------------------------
PAGE_VIEW = "page_view"
PRODUCT_VIEW = "product_view"
ADD_TO_CART = "add_to_cart"
REMOVE_FROM_CART = "remove_from_cart"
PURCHASE = "purchase"
RETURN = "return"
EMAIL_OPEN = "email_open"
EMAIL_CLICK = "email_click"
SIGNUP = "signup"
CORE_EVENT_TYPES = (
    PAGE_VIEW,
    PRODUCT_VIEW,
    ADD_TO_CART,
    REMOVE_FROM_CART,
    PURCHASE,
    RETURN,
    EMAIL_OPEN,
    EMAIL_CLICK,
    SIGNUP,
)

Kind = Literal["string", "timestamp", "date", "float", "int", "bool"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a contract table: its name, logical kind and whether it is required."""

    name: str
    kind: Kind
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One contract table: its columns and, if any, the column that must be unique."""

    name: str
    columns: tuple[ColumnSpec, ...]
    unique_key: str | None = None
    required: bool = True

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Names of the columns every input must have."""
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> ColumnSpec | None:
        """Return the spec of column ``name``, or ``None`` for an extra attribute."""
        return next((c for c in self.columns if c.name == name), None)


CUSTOMERS_SPEC = TableSpec(
    CUSTOMERS,
    (
        ColumnSpec(CUSTOMER_ID, "string", True, "unified profile id"),
        ColumnSpec(CREATED_AT, "timestamp", True, "profile creation time, UTC"),
        ColumnSpec(EMAIL, "string"),
        ColumnSpec(PHONE, "string"),
        ColumnSpec(BIRTH_DATE, "date"),
        ColumnSpec(GENDER, "string"),
        ColumnSpec(POSTCODE, "string"),
        ColumnSpec(CITY, "string"),
        ColumnSpec(CONSENT_EMAIL, "bool", description="consent to marketing email"),
        ColumnSpec(CONSENT_ADS, "bool", description="consent to ad-platform audiences"),
    ),
    unique_key=CUSTOMER_ID,
)

ITEMS_SPEC = TableSpec(
    ITEMS,
    (
        ColumnSpec(ITEM_ID, "string", True),
        ColumnSpec(TITLE, "string", True),
        ColumnSpec(CATEGORY, "string", True),
        ColumnSpec(BRAND, "string"),
        ColumnSpec(PRICE, "float", description="unit price, EUR"),
        ColumnSpec(URL, "string"),
        ColumnSpec(IMAGE_URL, "string"),
        ColumnSpec(ACTIVE, "bool"),
        ColumnSpec(REPURCHASABLE, "bool", description="consumable that is bought again"),
        ColumnSpec(DURABLE, "bool", description="bought once; never offer again"),
    ),
    unique_key=ITEM_ID,
)

EVENTS_SPEC = TableSpec(
    EVENTS,
    (
        ColumnSpec(CUSTOMER_ID, "string", True),
        ColumnSpec(TS, "timestamp", True, "event time, UTC"),
        ColumnSpec(EVENT_TYPE, "string", True),
        ColumnSpec(ITEM_ID, "string"),
        ColumnSpec(QUANTITY, "float", description="units, >= 0"),
        ColumnSpec(VALUE, "float", description="money, EUR"),
        ColumnSpec(CHANNEL, "string"),
        ColumnSpec(SESSION_ID, "string"),
        ColumnSpec(CAMPAIGN_ID, "string"),
        ColumnSpec(ORDER_ID, "string"),
    ),
)

SENDS_SPEC = TableSpec(
    SENDS,
    (
        ColumnSpec(CUSTOMER_ID, "string", True),
        ColumnSpec(TS, "timestamp", True, "send time, UTC"),
        ColumnSpec(CAMPAIGN_ID, "string", True),
        ColumnSpec(ITEM_ID, "string"),
        ColumnSpec(PLACEMENT, "string"),
    ),
    required=False,
)

TABLE_SPECS: dict[str, TableSpec] = {
    s.name: s for s in (CUSTOMERS_SPEC, ITEMS_SPEC, EVENTS_SPEC, SENDS_SPEC)
}
