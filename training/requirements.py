"""What each model needs from the data, checked before a job spends time on it.

A data scientist's own export often lacks parts of the data contract's optional
richness: one placeholder item instead of a catalogue, no prices, no web sessions,
purchases only. :func:`profile_shop` measures what a shop holds in one pass over its
events; :func:`missing_data` says, per model, what is missing in words that name the
data (table, column, event types) and what was found instead; :func:`require` raises
:class:`UnsupportedDataError` with that text. ``klantbeeld train all`` trains every model
the data support and reports the others with this message (:func:`training.jobs.train_model`).

What each model needs (beyond a valid shop):

- ``conversion_intent``: web/app sessions, i.e. events with a ``session_id`` or of a
  browsing type (page_view, product_view, add_to_cart, remove_from_cart): its population
  is "customers with a session in the window before T" and its signals are browsing.
- ``churn``: purchase events.
- ``repurchase_timing``: purchase events with an ``item_id`` (one placeholder item is
  enough: it then models "when does this customer buy again").
- ``recommender``: item events on at least :data:`MIN_RECOMMENDER_ITEMS` distinct items.
- ``clv``: purchases with a value (``events.value`` or the item's ``price``).

Whether the data span the backtest of a given horizon is checked by the backtest planner
itself (:func:`training.backtest.plan_backtest`); the jobs turn its refusal into an
:class:`UnsupportedDataError` via :func:`too_short`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from features import contract as c
from klantbeeld.errors import KlantbeeldError

#: Event types that make a visit without a ``session_id`` column.
BROWSE_TYPES = (c.PAGE_VIEW, c.PRODUCT_VIEW, c.ADD_TO_CART, c.REMOVE_FROM_CART)
#: The recommender needs item events on at least this many distinct items.
MIN_RECOMMENDER_ITEMS = 2


class UnsupportedDataError(KlantbeeldError):
    """The data lack what a model needs; ``model`` and ``missing`` say what.

    Attributes
    ----------
    model : str
        The model that cannot be trained.
    missing : list of str
        One sentence per missing piece of data, naming table/column/event type and
        what was found.
    """

    def __init__(self, model: str, missing: list[str], source: str = ""):
        self.model = model
        self.missing = list(missing)
        where = f" on {source}" if source else ""
        super().__init__(f"{model} cannot be trained{where}: " + "; ".join(self.missing))


@dataclass(frozen=True)
class DataProfile:
    """What a shop holds, for the requirement checks (counts are rows unless named).

    Attributes
    ----------
    n_events, n_purchases : int
        All events, and those of type ``purchase``.
    n_purchases_with_item : int
        Purchases whose ``item_id`` is set.
    n_session_events : int
        Events with a ``session_id`` or of a browsing type (:data:`BROWSE_TYPES`).
    n_items_with_events : int
        Distinct ``item_id`` values over all events.
    n_valued_purchases : int
        Purchases with a ``value`` or whose item has a ``price`` (for money-based models).
    first_event, last_event : datetime or None
        Time range of the events (naive UTC); None without events.
    event_types : dict of str to int
        Events per type.
    """

    n_events: int
    n_purchases: int
    n_purchases_with_item: int
    n_session_events: int
    n_items_with_events: int
    n_valued_purchases: int
    first_event: datetime | None
    last_event: datetime | None
    event_types: dict[str, int]

    def describe(self) -> str:
        """One line: the event types found and the time range."""
        types = ", ".join(f"{k}={v:,}" for k, v in self.event_types.items()) or "no events"
        span = (
            f" from {self.first_event:%Y-%m-%d} to {self.last_event:%Y-%m-%d}"
            if self.first_event and self.last_event
            else ""
        )
        return f"{types}{span}"


def profile_shop(shop: Any) -> DataProfile:
    """Measure what ``shop`` holds in one aggregate query over its events.

    Parameters
    ----------
    shop : features.shop.Shop
        An opened (possibly sampled or truncated) shop.

    Returns
    -------
    DataProfile
    """
    ev = shop.events
    cols = set(ev.columns)
    is_purchase = ev[c.EVENT_TYPE] == c.PURCHASE
    browse = ev[c.EVENT_TYPE].isin(BROWSE_TYPES)
    session = browse | ev[c.SESSION_ID].notnull() if c.SESSION_ID in cols else browse
    has_item = ev[c.ITEM_ID].notnull() if c.ITEM_ID in cols else None
    valued = is_purchase & ev[c.VALUE].notnull() if c.VALUE in cols else None
    if c.PRICE in shop.items.columns and has_item is not None:
        priced = shop.items.filter(shop.items[c.PRICE].notnull()).select(c.ITEM_ID)
        by_price = is_purchase & ev[c.ITEM_ID].isin(priced[c.ITEM_ID])
        valued = by_price if valued is None else valued | by_price
    aggs: dict[str, Any] = {
        "n_events": ev.count(),
        "n_purchases": is_purchase.sum(),
        "n_session_events": session.sum(),
        "first": ev[c.TS].min(),
        "last": ev[c.TS].max(),
    }
    if has_item is not None:
        aggs["n_purchases_with_item"] = (is_purchase & has_item).sum()
        aggs["n_items"] = ev[c.ITEM_ID].nunique()
    if valued is not None:
        aggs["n_valued"] = valued.sum()
    row = ev.aggregate(**aggs).to_pandas().iloc[0]
    types = ev.group_by(c.EVENT_TYPE).aggregate(n=ev.count()).to_pandas()
    types = types.sort_values(["n", c.EVENT_TYPE], ascending=[False, True])

    def count(key: str) -> int:
        value = row.get(key)
        return 0 if value is None or value != value else int(value)

    def when(key: str) -> datetime | None:
        value = row.get(key)
        return None if value is None or value != value else value.to_pydatetime()

    return DataProfile(
        n_events=count("n_events"),
        n_purchases=count("n_purchases"),
        n_purchases_with_item=count("n_purchases_with_item"),
        n_session_events=count("n_session_events"),
        n_items_with_events=count("n_items"),
        n_valued_purchases=count("n_valued"),
        first_event=when("first"),
        last_event=when("last"),
        event_types={str(k): int(v) for k, v in zip(types[c.EVENT_TYPE], types["n"], strict=True)},
    )


Check = Callable[[DataProfile], list[str]]


def _needs_sessions(p: DataProfile) -> list[str]:
    if p.n_session_events:
        return []
    return [
        "it needs web/app sessions (events with a session_id, or events of type "
        f"{', '.join(BROWSE_TYPES)}); the events hold only {p.describe()}"
    ]


def _needs_purchases(p: DataProfile) -> list[str]:
    if p.n_purchases:
        return []
    return [f"it needs purchase events (event_type 'purchase'); the events hold {p.describe()}"]


def _needs_item_purchases(p: DataProfile) -> list[str]:
    missing = _needs_purchases(p)
    if not missing and not p.n_purchases_with_item:
        missing.append(
            "it needs purchases with an item_id (events.item_id; one placeholder item is "
            f"enough); none of the {p.n_purchases:,} purchases has one"
        )
    return missing


def _needs_valued_purchases(p: DataProfile) -> list[str]:
    missing = _needs_purchases(p)
    if not missing and not p.n_valued_purchases:
        missing.append(
            "it needs order values (events.value on purchases, or items.price, EUR); none of "
            f"the {p.n_purchases:,} purchases has one"
        )
    return missing


def _needs_catalogue(p: DataProfile) -> list[str]:
    if p.n_items_with_events >= MIN_RECOMMENDER_ITEMS:
        return []
    return [
        f"it needs events on at least {MIN_RECOMMENDER_ITEMS} distinct items (events.item_id); "
        f"the events name {p.n_items_with_events} item"
        + ("s" if p.n_items_with_events != 1 else "")
        + " (a single placeholder item leaves nothing to recommend)"
    ]


#: Per model, the checks of what it needs. Other model families add their entry.
REQUIREMENTS: dict[str, Check] = {
    "conversion_intent": _needs_sessions,
    "churn": _needs_purchases,
    "repurchase_timing": _needs_item_purchases,
    "recommender": _needs_catalogue,
    "clv": _needs_valued_purchases,
}


def missing_data(model: str, profile: DataProfile) -> list[str]:
    """What ``model`` needs and ``profile`` lacks, one sentence each; empty when supported.

    Parameters
    ----------
    model : str
        A key of :data:`REQUIREMENTS`; a model without an entry needs nothing beyond a
        valid shop.
    profile : DataProfile

    Returns
    -------
    list of str
    """
    check = REQUIREMENTS.get(model)
    return check(profile) if check is not None else []


def require(model: str, profile: DataProfile, source: str = "") -> None:
    """Raise :class:`UnsupportedDataError` when ``profile`` lacks what ``model`` needs.

    Parameters
    ----------
    model : str
    profile : DataProfile
    source : str
        The data's location, for the message.
    """
    missing = missing_data(model, profile)
    if missing:
        raise UnsupportedDataError(model, missing, source)


#: The ``klantbeeld train`` option that sets each model's horizon.
HORIZON_OPTIONS = {
    "conversion_intent": "--conversion-horizon",
    "churn": "--churn-horizon",
    "repurchase_timing": "--repurchase-weeks",
    "recommender": "--recommender-test-days",
    "clv": "--horizon-days",
}


def too_short(model: str, exc: ValueError, source: str = "") -> UnsupportedDataError:
    """The planner's refusal (data shorter than the backtest) as an :class:`UnsupportedDataError`.

    Parameters
    ----------
    model : str
    exc : ValueError
        Raised by :func:`training.backtest.plan_backtest`.
    source : str
        The data's location.

    Returns
    -------
    UnsupportedDataError
    """
    option = HORIZON_OPTIONS.get(model)
    hint = f"; a shorter horizon ({option}) needs less history" if option else ""
    return UnsupportedDataError(model, [f"{exc}{hint}"], source)
