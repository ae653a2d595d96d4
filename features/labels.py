"""Labels and populations of the models (ARCHITECTURE §3), from the future window only.

Time is split cleanly at T: a snapshot at T reads events with ``ts < T``; a label at T
reads events with ``T <= ts < T + H`` (the *label window*). Populations are defined
from history before T and only contain customers created before T, so labels join 1:1
onto the rows of :func:`features.snapshot.build_snapshot`.

All outputs are pandas DataFrames sorted by their key columns.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any, Literal

import ibis
import numpy as np
import pandas as pd

from features import contract as c
from features.definitions import last_event_time
from features.snapshot import (
    REPURCHASABLE_FLAG,
    events_between,
    normalize_as_of,
    repurchasable_items,
)

log = logging.getLogger(__name__)

LABEL = "label"
DAYS_TO_NEXT = "days_to_next"
WEEK = "week"
OBSERVED = "observed"
_SITE_TYPES = (c.PAGE_VIEW, c.PRODUCT_VIEW, c.ADD_TO_CART, c.REMOVE_FROM_CART, c.PURCHASE)


def _ts(value: datetime) -> ibis.Value:
    return ibis.literal(value, type="timestamp")


def _window(shop: Any, start: datetime, end: datetime) -> ibis.Table:
    """Events with ``start <= ts < end``."""
    e = shop.events
    return e.filter((e[c.TS] >= _ts(start)) & (e[c.TS] < _ts(end)))


def _customers_before(shop: Any, as_of: datetime) -> ibis.Table:
    cu = shop.customers
    return cu.filter(cu[c.CREATED_AT] < _ts(as_of)).select(c.CUSTOMER_ID)


def _check_horizon(shop: Any, end: datetime) -> None:
    """Warn when the data end before the label window does (labels would be censored)."""
    last = last_event_time(shop)
    if last is not None and last < end - timedelta(days=1):
        log.warning(
            "label window ends %s but the last event is at %s: labels near the end of the "
            "data are censored",
            end.isoformat(),
            last.isoformat(),
        )


def _check_days(name: str, value: int) -> int:
    if not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive whole number of days, got {value!r}")
    return int(value)


def _session_events(shop: Any, start: datetime, end: datetime) -> ibis.Table:
    """Events that belong to a visit: a ``session_id``; or, without that column, on-site types."""
    w = _window(shop, start, end)
    if c.SESSION_ID in w.columns:
        return w.filter(w[c.SESSION_ID].notnull())
    return w.filter(w[c.EVENT_TYPE].isin(_SITE_TYPES))


def _purchasers(events: ibis.Table) -> ibis.Table:
    p = events.filter(events[c.EVENT_TYPE] == c.PURCHASE)
    return p.select(c.CUSTOMER_ID).distinct()


def _binary_labels(population: ibis.Table, positives: ibis.Table, invert: bool) -> pd.DataFrame:
    flag = positives.mutate(_hit=ibis.literal(1))
    j = population.left_join(flag, c.CUSTOMER_ID)
    hit = j["_hit"].notnull()
    label = ~hit if invert else hit
    out = j.select(c.CUSTOMER_ID, **{LABEL: label.cast("int8")}).order_by(c.CUSTOMER_ID)
    df = out.to_pyarrow().to_pandas()
    df[LABEL] = df[LABEL].astype("int8")
    return df.reset_index(drop=True)


def conversion_labels(
    shop: Any,
    as_of: datetime | date | str,
    horizon_days: int = 7,
    population_days: int = 30,
) -> pd.DataFrame:
    """Will the customer purchase within ``horizon_days`` after T?

    Parameters
    ----------
    shop : features.shop.Shop
        Opened shop.
    as_of : datetime, date or ISO string
        T (naive UTC; a date means midnight).
    horizon_days : int, default 7
        Label window ``[T, T + horizon_days)`` in days.
    population_days : int, default 30
        Population: customers created before T with at least one session event
        (an event with a ``session_id``) in ``[T - population_days, T)``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` and ``label`` (int8: 1 when the customer has at least one
        purchase in the label window), sorted by ``customer_id``.
    """
    as_of = normalize_as_of(as_of)
    horizon = _check_days("horizon_days", horizon_days)
    pop_days = _check_days("population_days", population_days)
    end = as_of + timedelta(days=horizon)
    _check_horizon(shop, end)
    visited = (
        _session_events(shop, as_of - timedelta(days=pop_days), as_of)
        .select(c.CUSTOMER_ID)
        .distinct()
    )
    population = _customers_before(shop, as_of).semi_join(visited, c.CUSTOMER_ID)
    return _binary_labels(population, _purchasers(_window(shop, as_of, end)), invert=False)


def churn_labels(
    shop: Any,
    as_of: datetime | date | str,
    horizon_days: int = 90,
    population_days: int = 365,
) -> pd.DataFrame:
    """Will the customer make no purchase within ``horizon_days`` after T?

    Parameters
    ----------
    shop : features.shop.Shop
        Opened shop.
    as_of : datetime, date or ISO string
        T (naive UTC; a date means midnight).
    horizon_days : int, default 90
        Label window ``[T, T + horizon_days)`` in days.
    population_days : int, default 365
        Population: customers created before T with at least one purchase in
        ``[T - population_days, T)``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id`` and ``label`` (int8: 1 = churned, i.e. no purchase in the label
        window), sorted by ``customer_id``.
    """
    as_of = normalize_as_of(as_of)
    horizon = _check_days("horizon_days", horizon_days)
    pop_days = _check_days("population_days", population_days)
    end = as_of + timedelta(days=horizon)
    _check_horizon(shop, end)
    buyers = _purchasers(_window(shop, as_of - timedelta(days=pop_days), as_of))
    population = _customers_before(shop, as_of).semi_join(buyers, c.CUSTOMER_ID)
    return _binary_labels(population, _purchasers(_window(shop, as_of, end)), invert=True)


def repurchase_labels(
    shop: Any,
    as_of: datetime | date | str,
    weeks: int = 12,
    level: Literal["item", "category"] = "item",
) -> pd.DataFrame:
    """When, within ``weeks`` weeks after T, does the customer buy the item/category again?

    Parameters
    ----------
    shop : features.shop.Shop
        Opened shop.
    as_of : datetime, date or ISO string
        T (naive UTC; a date means midnight).
    weeks : int, default 12
        Label window ``[T, T + 7 * weeks days)``.
    level : {"item", "category"}
        Pairs are (customer, repurchasable item) or (customer, category of such items).

    Returns
    -------
    pandas.DataFrame
        One row per pair with at least one purchase of a repurchasable item before T
        (customers created before T), sorted by the keys: ``customer_id``, ``item_id``
        or ``category``, ``days_to_next`` (float days from T to the first purchase in the
        window; NaN when none), ``week`` (int: 1 for days [0, 7), ..., ``weeks``; 0 when
        none) and ``observed`` (int8: 1 when a purchase falls in the window).
    """
    if level not in ("item", "category"):
        raise ValueError(f"level must be 'item' or 'category', got {level!r}")
    if not isinstance(weeks, int | np.integer) or weeks < 1:
        raise ValueError(f"weeks must be a positive whole number, got {weeks!r}")
    as_of = normalize_as_of(as_of)
    end = as_of + timedelta(days=7 * int(weeks))
    _check_horizon(shop, end)
    key = c.ITEM_ID if level == "item" else c.CATEGORY
    items = repurchasable_items(shop)
    items = items.filter(items[REPURCHASABLE_FLAG]).select(c.ITEM_ID, c.CATEGORY)

    def lines(start: datetime | None, stop: datetime) -> ibis.Table:
        ev = events_between(shop, start, stop)
        p = ev.filter((ev[c.EVENT_TYPE] == c.PURCHASE) & ev[c.ITEM_ID].notnull())
        return p.inner_join(items, c.ITEM_ID)

    past = lines(None, as_of)
    pairs = (
        past.select(c.CUSTOMER_ID, key)
        .distinct()
        .semi_join(_customers_before(shop, as_of), c.CUSTOMER_ID)
    )
    future = lines(as_of, end)
    nxt = future.aggregate(by=[c.CUSTOMER_ID, key], next_ts=future[c.TS].min())
    j = pairs.left_join(nxt, [c.CUSTOMER_ID, key])
    j = j.select(c.CUSTOMER_ID, key, "next_ts").order_by([c.CUSTOMER_ID, key])
    raw = j.to_pyarrow().to_pandas()
    nxt_ts = pd.to_datetime(raw["next_ts"]).to_numpy(dtype="datetime64[us]")
    delta = (nxt_ts - np.datetime64(as_of, "us")).astype("timedelta64[us]")
    days = delta.astype("int64").astype("float64") / 86_400e6
    observed = ~np.isnat(delta)
    days[~observed] = np.nan
    week = np.zeros(len(raw), dtype="int64")
    week[observed] = np.floor(days[observed] / 7.0).astype("int64") + 1
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: raw[c.CUSTOMER_ID].astype(pd.StringDtype(na_value=np.nan)),
            key: raw[key].astype(pd.StringDtype(na_value=np.nan)),
            DAYS_TO_NEXT: days,
            WEEK: week,
            OBSERVED: observed.astype("int8"),
        }
    )
