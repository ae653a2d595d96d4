"""Feature groups declared as data.

A :class:`FeatureGroup` states, Feast-style, *what* a snapshot contains: the entity it
describes (its key columns), the lookback windows, and the typed output schema (name,
dtype, unit, description) of every column it produces. Event-window aggregates are
declared as :class:`WindowAggregate` rows (event types, count or sum of value); the
snapshot builder (:mod:`features.snapshot`) compiles them into Ibis expressions, so the
same declarations run on any Ibis backend.

Column names with ``{w}`` are repeated per lookback window (``orders_30d``); names with
``{key}`` are repeated per value found at snapshot time (one column per category of the
items table, per channel seen before T, per core event type, per lifecycle stage).

Conventions: time quantities are days (float64), money is EUR (float64, summed in whole
cents so sums are exact), counts are int64, shares are fractions in [0, 1]. ``NaN``
means "undefined" (e.g. days since last purchase for a customer who never bought); each
description says when.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from features import contract as c

CUSTOMER = "customer"
CUSTOMER_CATEGORY = "customer_category"
CUSTOMER_ITEM = "customer_item"
ENTITIES = (CUSTOMER, CUSTOMER_CATEGORY, CUSTOMER_ITEM)
ENTITY_KEYS: dict[str, tuple[str, ...]] = {
    CUSTOMER: (c.CUSTOMER_ID,),
    CUSTOMER_CATEGORY: (c.CUSTOMER_ID, c.CATEGORY),
    CUSTOMER_ITEM: (c.CUSTOMER_ID, c.ITEM_ID),
}

WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90, 365)
"""Lookback windows (days before T) of every windowed feature."""

DECAY_DAYS: tuple[int, ...] = (30, 90, 180)
"""Time constants (days) of the exponentially fading session counts."""

SECONDS_PER_DAY = 86_400.0

# Lifecycle stages, in the order of their one-hot columns (see LIFECYCLE_RULE).
ACQUISITION = "acquisition"
ACTIVATION = "activation"
DEVELOPMENT = "development"
RETENTION = "retention"
WIN_BACK = "win_back"
LIFECYCLE_STAGES: tuple[str, ...] = (ACQUISITION, ACTIVATION, DEVELOPMENT, RETENTION, WIN_BACK)
LAPSED_DAYS = 180.0
"""A buyer whose last order is more than this many days before T is in win-back."""
DEVELOPMENT_DAYS = 180.0
"""A repeat buyer whose first order is less than this many days before T is developing."""
OVERDUE_FACTOR = 2.0
OVERDUE_MIN_DAYS = 90.0
LIFECYCLE_RULE = (
    "Evaluated in this order, on orders strictly before T: "
    "acquisition = no order yet; "
    f"win_back = at least one order and (last order more than {LAPSED_DAYS:g} days ago, or "
    f"2+ orders and days since last order > max({OVERDUE_FACTOR:g} x mean inter-order "
    f"interval, {OVERDUE_MIN_DAYS:g})); "
    "activation = exactly one order; "
    f"development = 2+ orders and first order less than {DEVELOPMENT_DAYS:g} days ago; "
    "retention = 2+ orders otherwise (bought within the expected rhythm)."
)

Dtype = Literal["float64", "int64", "int8", "category", "string"]


@dataclass(frozen=True)
class Column:
    """One output column (or a family of columns) of a feature group.

    Attributes
    ----------
    name : str
        Column name; ``{w}`` expands per lookback window, ``{key}`` per value of
        :attr:`expand`.
    dtype : str
        ``float64``, ``int64``, ``int8``, ``category`` or ``string``.
    unit : str
        ``days``, ``EUR``, ``count``, ``share``, ``ratio``, ``years``, ``flag``, ``id``
        or ``label``.
    description : str
        What the value means, incl. when it is NaN; may use ``{w}`` and ``{key}``.
    expand : str | None
        ``category``, ``channel``, ``event_type`` or ``lifecycle``: one column per value.
    """

    name: str
    dtype: Dtype
    unit: str
    description: str
    expand: str | None = None

    @property
    def windowed(self) -> bool:
        """Whether the column repeats per lookback window."""
        return "{w}" in self.name


@dataclass(frozen=True)
class WindowAggregate:
    """An aggregate over a customer's events of some types within each lookback window.

    Compiled by the snapshot builder into ``count(*) FILTER (WHERE type IN ... AND ts >=
    T - w)`` (``how="count"``) or the sum of ``value`` in whole cents (``how="value"``).
    """

    name: str
    event_types: tuple[str, ...]
    how: Literal["count", "value"]
    unit: str
    description: str


@dataclass(frozen=True)
class FeatureGroup:
    """A named set of features of one entity, declared as data.

    Attributes
    ----------
    name : str
        Group name, stored in every column's manifest entry.
    entity : str
        ``customer``, ``customer_category`` or ``customer_item``.
    source : str
        What the group is computed from (documentation: ``events``, ``orders``,
        ``sessions``, ``customers``, derived).
    lookbacks_days : tuple[int, ...]
        Windows of the ``{w}`` columns; empty when none.
    columns : tuple[Column, ...]
        Output schema.
    aggregates : tuple[WindowAggregate, ...]
        Event-window aggregates the builder compiles (each yields ``<name>_{w}d``).
    """

    name: str
    entity: str
    source: str
    columns: tuple[Column, ...]
    lookbacks_days: tuple[int, ...] = ()
    aggregates: tuple[WindowAggregate, ...] = field(default_factory=tuple)

    @property
    def keys(self) -> tuple[str, ...]:
        """Key columns of the group's entity."""
        return ENTITY_KEYS[self.entity]


def sanitize(value: str) -> str:
    """Turn a category/channel/event-type value into a column-name fragment.

    Lower-cases, replaces every run of characters other than ``a-z0-9`` by ``_`` and
    strips leading/trailing ``_``; an empty result becomes ``unknown``.

    >>> sanitize("Home Decoration & Gifts")
    'home_decoration_gifts'
    """
    text = re.sub(r"[^a-z0-9]+", "_", str(value).lower()).strip("_")
    return text or "unknown"


def sanitized_names(values: list[str]) -> dict[str, str]:
    """Map each value to a unique sanitised fragment; collisions get ``_2``, ``_3`` ...

    Values are processed in sorted order, so the mapping is deterministic.
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for value in sorted(values):
        base = sanitize(value)
        name, i = base, 2
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        out[value] = name
    return out


def _activity_aggregates() -> tuple[WindowAggregate, ...]:
    return (
        WindowAggregate(
            "product_views",
            (c.PRODUCT_VIEW,),
            "count",
            "count",
            "product views in the {w} days before T",
        ),
        WindowAggregate(
            "add_to_carts",
            (c.ADD_TO_CART,),
            "count",
            "count",
            "add-to-cart events in the {w} days before T",
        ),
        WindowAggregate(
            "email_opens", (c.EMAIL_OPEN,), "count", "count", "email opens in the {w} days before T"
        ),
        WindowAggregate(
            "email_clicks",
            (c.EMAIL_CLICK,),
            "count",
            "count",
            "email clicks in the {w} days before T",
        ),
        WindowAggregate(
            "returns", (c.RETURN,), "count", "count", "return events in the {w} days before T"
        ),
        WindowAggregate(
            "return_value",
            (c.RETURN,),
            "value",
            "EUR",
            "value of returns in the {w} days before T (EUR)",
        ),
    )


def _columns_of(aggregates: tuple[WindowAggregate, ...]) -> tuple[Column, ...]:
    return tuple(
        Column(
            f"{a.name}_{{w}}d",
            "float64" if a.how == "value" else "int64",
            a.unit,
            a.description,
        )
        for a in aggregates
    )


def _cycle_columns(kind: str) -> tuple[Column, ...]:
    """Schema shared by the customer x category and customer x item cycle groups."""
    cols = (
        Column(
            "purchases",
            "int64",
            "count",
            "orders before T containing a repurchasable item of this {entity}",
        ),
        Column(
            "days_since_last",
            "float64",
            "days",
            "days from the last such order to T",
        ),
        Column(
            "own_cycle_days",
            "float64",
            "days",
            "the customer's mean days between such orders (last - first) / (purchases - 1); "
            "NaN with 1 purchase",
        ),
        Column(
            "median_cycle_days",
            "float64",
            "days",
            "median over customers with 2+ purchases of their own_cycle_days for this "
            "{entity}, from history before T; NaN when no customer bought it twice",
        ),
        Column(
            "overdue_own",
            "float64",
            "ratio",
            "days_since_last / own_cycle_days; NaN when own_cycle_days is NaN",
        ),
        Column(
            "overdue_median",
            "float64",
            "ratio",
            "days_since_last / median_cycle_days; NaN when median_cycle_days is NaN",
        ),
    )
    return tuple(
        Column(col.name, col.dtype, col.unit, col.description.replace("{entity}", kind))
        for col in cols
    )


_ACTIVITY = _activity_aggregates()

FEATURE_GROUPS: tuple[FeatureGroup, ...] = (
    FeatureGroup(
        "profile",
        CUSTOMER,
        "customers",
        (
            Column("tenure_days", "float64", "days", "days from profile creation to T"),
            Column(
                "age_years",
                "float64",
                "years",
                "completed years of age at T from birth_date; NaN when birth_date is unknown "
                "or not before T",
            ),
        ),
    ),
    FeatureGroup(
        "rfm",
        CUSTOMER,
        "orders",
        (
            Column(
                "recency_days",
                "float64",
                "days",
                "days from the last order to T; NaN when no order before T",
            ),
            Column("orders_total", "int64", "count", "orders before T (all history)"),
            Column("monetary_total", "float64", "EUR", "value of all orders before T (EUR)"),
            Column("orders_{w}d", "int64", "count", "orders in the {w} days before T"),
            Column("monetary_{w}d", "float64", "EUR", "value of orders in the {w} days before T"),
        ),
        lookbacks_days=WINDOWS_DAYS,
    ),
    FeatureGroup(
        "intervals",
        CUSTOMER,
        "orders",
        (
            Column(
                "first_order_days",
                "float64",
                "days",
                "days from the first order to T; NaN when no order before T",
            ),
            Column(
                "interval_mean_days",
                "float64",
                "days",
                "mean days between consecutive orders before T; NaN with fewer than 2 orders",
            ),
            Column(
                "interval_std_days",
                "float64",
                "days",
                "sample standard deviation of the days between consecutive orders (1 s "
                "resolution); NaN with fewer than 3 orders",
            ),
            Column(
                "recency_over_interval",
                "float64",
                "ratio",
                "recency_days / interval_mean_days (>1: overdue); NaN with fewer than 2 orders",
            ),
        ),
    ),
    FeatureGroup(
        "sessions",
        CUSTOMER,
        "sessions",
        (
            Column(
                "sessions_{w}d",
                "int64",
                "count",
                "sessions (distinct session_id) whose first event before T lies in the {w} "
                "days before T",
            ),
            Column(
                "abandoned_carts_{w}d",
                "int64",
                "count",
                "of those sessions, the ones with an add_to_cart and no purchase before T",
            ),
            *(
                Column(
                    f"sessions_decay_{d}d",
                    "float64",
                    "count",
                    f"sessions before T, each weighted exp(-age / {d} days) (age: days from "
                    "its first event to T): a visit count that fades, so a slowing visit "
                    "rhythm shows before whole windows empty; 0 when none",
                )
                for d in DECAY_DAYS
            ),
            Column(
                "days_since_last_session",
                "float64",
                "days",
                "days from the first event of the latest session to T; NaN when none",
            ),
        ),
        lookbacks_days=WINDOWS_DAYS,
    ),
    FeatureGroup(
        "activity",
        CUSTOMER,
        "events",
        (
            Column("events_total", "int64", "count", "events of any type before T"),
            *_columns_of(_ACTIVITY),
        ),
        lookbacks_days=WINDOWS_DAYS,
        aggregates=_ACTIVITY,
    ),
    FeatureGroup(
        "email_engagement",
        CUSTOMER,
        "sends x events",
        (
            Column(
                "email_sends_{w}d",
                "int64",
                "count",
                "emails sent to the customer in the {w} days before T (sends table; 0 without one)",
            ),
            Column(
                "email_open_rate_{w}d",
                "float64",
                "ratio",
                "email_opens_{w}d / email_sends_{w}d (can exceed 1: repeated opens, opens of "
                "earlier sends); NaN when nothing was sent",
            ),
        ),
        lookbacks_days=WINDOWS_DAYS,
    ),
    FeatureGroup(
        "recency_by_type",
        CUSTOMER,
        "events",
        (
            Column(
                "days_since_last_{key}",
                "float64",
                "days",
                "days from the last {key} event to T; NaN when none before T",
                expand="event_type",
            ),
        ),
    ),
    FeatureGroup(
        "category_affinity",
        CUSTOMER,
        "events x items",
        (
            Column(
                "view_share_{key}",
                "float64",
                "share",
                "share of the customer's product views before T on items of category "
                "'{key}'; NaN when no product view",
                expand="category",
            ),
            Column(
                "purchase_share_{key}",
                "float64",
                "share",
                "share of the customer's purchase lines before T on items of category "
                "'{key}'; NaN when no purchase",
                expand="category",
            ),
        ),
    ),
    FeatureGroup(
        "channel_mix",
        CUSTOMER,
        "events",
        (
            Column(
                "channel_share_{key}",
                "float64",
                "share",
                "share of the customer's events before T (those with a channel) on channel "
                "'{key}'; NaN when none has a channel",
                expand="channel",
            ),
        ),
    ),
    FeatureGroup(
        "lifecycle",
        CUSTOMER,
        "derived",
        (
            Column(
                "lifecycle_stage", "category", "label", "lifecycle stage at T: " + LIFECYCLE_RULE
            ),
            Column(
                "lifecycle_{key}",
                "int8",
                "flag",
                "1 when lifecycle_stage is '{key}'",
                expand="lifecycle",
            ),
        ),
    ),
    FeatureGroup(
        "category_cycle",
        CUSTOMER_CATEGORY,
        "orders x items (repurchasable)",
        _cycle_columns("category"),
    ),
    FeatureGroup(
        "item_cycle", CUSTOMER_ITEM, "orders x items (repurchasable)", _cycle_columns("item")
    ),
)


def groups_for(entity: str) -> tuple[FeatureGroup, ...]:
    """Return the feature groups of ``entity`` in declaration order."""
    if entity not in ENTITIES:
        raise ValueError(f"entity must be one of {ENTITIES}, got {entity!r}")
    return tuple(g for g in FEATURE_GROUPS if g.entity == entity)


def group(name: str) -> FeatureGroup:
    """Return the feature group called ``name``."""
    for g in FEATURE_GROUPS:
        if g.name == name:
            return g
    raise ValueError(f"name must be a declared feature group, got {name!r}")
