"""The history tables of the rule context, from pandas event rows or from a shop (Ibis).

Both paths return the same tables (a test checks it), as of one instant ``now`` (events at
or before it count):

- ``items``: the items table plus ``cycle_days``, the item's median cycle
  (:func:`features.definitions.median_cycle_days`);
- ``purchases``: per (customer, item) bought: ``last_ts``, ``n_purchases`` (purchase
  lines), ``n_gaps`` (distinct orders - 1) and ``own_cycle_days`` (the customer's mean days
  between orders of the item, :func:`features.definitions.own_cycle_days`);
- ``sends``: per (customer, item, placement) the latest send ``last_ts``;
- ``carts``: open cart lines (added, not bought or removed since): customer, item, ``ts``;
- ``affinity``: customer x category weights (:data:`AFFINITY_WEIGHTS`);
- ``popularity``: item -> distinct buyers in the recent window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.definitions import MEDIAN_CYCLE_DAYS, add_cycles, order_key_expr, purchase_cycles
from serving.context_tables import (
    AFFINITY_WEIGHTS,
    CYCLE_DAYS,
    LAST_TS,
    N_GAPS,
    N_PURCHASES,
    OWN_CYCLE_DAYS,
    POPULARITY,
    WEIGHT,
)

_SUMMARY = [c.CUSTOMER_ID, c.ITEM_ID, LAST_TS, N_PURCHASES, N_GAPS, OWN_CYCLE_DAYS]


def _summary(cycles: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Purchase summary and per-item cycle from :func:`features.definitions.add_cycles`."""
    summary = pd.DataFrame(
        {
            c.CUSTOMER_ID: cycles[c.CUSTOMER_ID].to_numpy(),
            c.ITEM_ID: cycles[c.ITEM_ID].to_numpy(),
            LAST_TS: cycles["last_ts"].to_numpy(),
            N_PURCHASES: cycles["lines"].to_numpy(dtype=np.int64),
            N_GAPS: np.maximum(cycles["purchases"].to_numpy(dtype=np.int64) - 1, 0),
            OWN_CYCLE_DAYS: cycles[OWN_CYCLE_DAYS].to_numpy(dtype=np.float64),
        }
    )
    per_item = (
        cycles.groupby(c.ITEM_ID, sort=True)[MEDIAN_CYCLE_DAYS]
        .first()
        .rename(CYCLE_DAYS)
        .reset_index()
    )
    return summary[_SUMMARY], per_item


def purchase_summary(buys: pd.DataFrame, now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customer, item) purchase summary and the per-item median cycle (days), in pandas.

    Parameters
    ----------
    buys : DataFrame
        Purchase lines at or before ``now``: ``customer_id, item_id, ts`` and optional
        ``order_id``.
    now : datetime
        Reference instant (naive UTC).

    Returns
    -------
    (DataFrame, DataFrame)
        ``customer_id, item_id, last_ts, n_purchases, n_gaps, own_cycle_days`` and
        ``item_id, cycle_days``.
    """
    return _summary(purchase_cycles(buys, c.ITEM_ID, now))


def open_carts(ev: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Add-to-cart lines after ``since`` with no later purchase or removal of the item."""
    adds = ev[(ev[c.EVENT_TYPE] == c.ADD_TO_CART) & (ev[c.TS] > since)]
    adds = adds.groupby([c.CUSTOMER_ID, c.ITEM_ID])[c.TS].max().reset_index()
    ends = ev[ev[c.EVENT_TYPE].isin([c.PURCHASE, c.REMOVE_FROM_CART])]
    closing = ends.groupby([c.CUSTOMER_ID, c.ITEM_ID])[c.TS].max().rename("_closed")
    out = adds.merge(closing.reset_index(), on=[c.CUSTOMER_ID, c.ITEM_ID], how="left")
    out = out[out["_closed"].isna() | (out["_closed"] < out[c.TS])]
    return out[[c.CUSTOMER_ID, c.ITEM_ID, c.TS]].reset_index(drop=True)


def history_from_events(
    now: datetime,
    items: pd.DataFrame,
    events: pd.DataFrame,
    sends: pd.DataFrame | None,
    *,
    popular_days: int,
    affinity_days: int,
    cart_days: int,
) -> dict[str, pd.DataFrame]:
    """The context's history tables from plain pandas rows (see the module docstring).

    Parameters
    ----------
    now : datetime
        Reference instant; later events and sends are ignored (point in time).
    items : DataFrame
        Contract items (``cycle_days`` is recomputed).
    events : DataFrame
        Contract events: ``customer_id, ts, event_type, item_id`` (and ``order_id``).
    sends : DataFrame, optional
        Contract sends: ``customer_id, ts, item_id`` and optional ``placement``.
    popular_days, affinity_days, cart_days : int
        Windows (days before ``now``) for popularity, category affinity and open carts.

    Returns
    -------
    dict of DataFrame
        ``items, purchases, sends, carts, affinity, popularity``.
    """
    now_ts = pd.Timestamp(now)
    cols = [c.CUSTOMER_ID, c.TS, c.EVENT_TYPE, c.ITEM_ID]
    ev = events[cols + ([c.ORDER_ID] if c.ORDER_ID in events.columns else [])].copy()
    ev[c.TS] = pd.to_datetime(ev[c.TS])
    ev = ev[(ev[c.TS] <= now_ts) & ev[c.ITEM_ID].notna()]
    buys = ev[ev[c.EVENT_TYPE] == c.PURCHASE]
    purchases, cycles = purchase_summary(buys, now_ts.to_pydatetime())
    items = items.drop(columns=[CYCLE_DAYS], errors="ignore").merge(
        cycles, on=c.ITEM_ID, how="left"
    )
    if sends is None or len(sends) == 0 or c.ITEM_ID not in sends.columns:
        send_sum = pd.DataFrame({c.CUSTOMER_ID: [], c.ITEM_ID: [], c.PLACEMENT: [], LAST_TS: []})
    else:
        s = sends.copy()
        if c.PLACEMENT not in s.columns:
            s[c.PLACEMENT] = None
        s[c.TS] = pd.to_datetime(s[c.TS])
        s = s[(s[c.TS] <= now_ts) & s[c.ITEM_ID].notna()]
        send_sum = (
            s.groupby([c.CUSTOMER_ID, c.ITEM_ID, c.PLACEMENT], dropna=False)[c.TS]
            .max()
            .rename(LAST_TS)
            .reset_index()
        )
    carts = open_carts(ev, now_ts - timedelta(days=cart_days))
    cat = items[[c.ITEM_ID, c.CATEGORY]]
    recent = ev[ev[c.TS] > now_ts - timedelta(days=affinity_days)]
    recent = recent.assign(**{WEIGHT: recent[c.EVENT_TYPE].map(AFFINITY_WEIGHTS)}).dropna(
        subset=[WEIGHT]
    )
    affinity = (
        recent.merge(cat, on=c.ITEM_ID)
        .groupby([c.CUSTOMER_ID, c.CATEGORY])[WEIGHT]
        .sum()
        .reset_index()
    )
    pop_buys = buys[buys[c.TS] > now_ts - timedelta(days=popular_days)]
    popularity = (
        pop_buys.groupby(c.ITEM_ID)[c.CUSTOMER_ID].nunique().rename(POPULARITY).reset_index()
    )
    return {
        "items": items,
        "purchases": purchases,
        "sends": send_sum,
        "carts": carts,
        "affinity": affinity,
        "popularity": popularity,
    }


def _naive(ts: Any) -> datetime:
    return pd.Timestamp(ts).to_pydatetime().replace(tzinfo=None)


def history_from_shop(
    shop: Any,
    now: datetime,
    *,
    popular_days: int,
    affinity_days: int,
    cart_days: int,
) -> dict[str, pd.DataFrame]:
    """The context's tables from a :class:`features.shop.Shop`; aggregates run in the engine.

    ``shop`` is a validated :class:`features.shop.Shop`; ``now`` and the windows are as for
    :func:`history_from_events`.

    Returns
    -------
    dict of DataFrame
        ``customers, items, purchases, sends, carts, affinity, popularity``.
    """
    import ibis

    e = shop.events
    now_lit = ibis.literal(_naive(now))
    ev = e.filter(e[c.TS] <= now_lit, e[c.ITEM_ID].notnull())

    cust_cols = [
        col
        for col in (c.CUSTOMER_ID, c.CONSENT_EMAIL, c.CONSENT_ADS)
        if col in shop.customers.columns
    ]
    customers = shop.customers.select(cust_cols).to_pandas()
    items = shop.items.to_pandas()

    # Purchase summary: distinct orders, first and last purchase per (customer, item).
    buys = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
    keyed = buys.mutate(_order=order_key_expr(buys))
    pairs = (
        keyed.group_by([c.CUSTOMER_ID, c.ITEM_ID])
        .aggregate(
            purchases=keyed._order.nunique(),
            lines=keyed.count(),
            first_ts=keyed[c.TS].min(),
            last_ts=keyed[c.TS].max(),
        )
        .to_pandas()
        .sort_values([c.CUSTOMER_ID, c.ITEM_ID])
        .reset_index(drop=True)
    )
    purchases, cycles = _summary(add_cycles(pairs, c.ITEM_ID, _naive(now)))
    items = items.merge(cycles, on=c.ITEM_ID, how="left")

    if shop.sends is not None and c.ITEM_ID in shop.sends.columns:
        s = shop.sends
        s = s.filter(s[c.TS] <= now_lit, s[c.ITEM_ID].notnull())
        keys = [s[c.CUSTOMER_ID], s[c.ITEM_ID]]
        if c.PLACEMENT in s.columns:
            keys.append(s[c.PLACEMENT])
        sends = s.group_by(keys).aggregate(**{LAST_TS: s[c.TS].max()}).to_pandas()
    else:
        sends = pd.DataFrame({c.CUSTOMER_ID: [], c.ITEM_ID: [], LAST_TS: []})

    cart_since = ibis.literal(_naive(pd.Timestamp(now) - pd.Timedelta(days=cart_days)))
    adds = ev.filter(ev[c.EVENT_TYPE] == c.ADD_TO_CART, ev[c.TS] > cart_since)
    adds = adds.group_by([c.CUSTOMER_ID, c.ITEM_ID]).aggregate(**{c.TS: adds[c.TS].max()})
    closing = ev.filter(ev[c.EVENT_TYPE].isin([c.PURCHASE, c.REMOVE_FROM_CART]))
    closing = closing.group_by([c.CUSTOMER_ID, c.ITEM_ID]).aggregate(_closed=closing[c.TS].max())
    carts = adds.left_join(closing, [c.CUSTOMER_ID, c.ITEM_ID])
    carts = carts.filter(carts._closed.isnull() | (carts._closed < carts[c.TS])).select(
        c.CUSTOMER_ID, c.ITEM_ID, c.TS
    )

    aff_since = ibis.literal(_naive(pd.Timestamp(now) - pd.Timedelta(days=affinity_days)))
    recent = ev.filter(ev[c.TS] > aff_since, ev[c.EVENT_TYPE].isin(list(AFFINITY_WEIGHTS)))
    weight = ibis.cases(
        *[(recent[c.EVENT_TYPE] == k, v) for k, v in AFFINITY_WEIGHTS.items()], else_=0.0
    )
    it = shop.items.select(c.ITEM_ID, c.CATEGORY)
    joined = recent.mutate(_w=weight).join(it, c.ITEM_ID)
    affinity = (
        joined.group_by([c.CUSTOMER_ID, c.CATEGORY]).aggregate(**{WEIGHT: joined._w.sum()})
    ).to_pandas()

    pop_since = ibis.literal(_naive(pd.Timestamp(now) - pd.Timedelta(days=popular_days)))
    pb = buys.filter(buys[c.TS] > pop_since)
    popularity = (
        pb.group_by(c.ITEM_ID).aggregate(**{POPULARITY: pb[c.CUSTOMER_ID].nunique()}).to_pandas()
    )
    return {
        "customers": customers,
        "items": items,
        "purchases": purchases,
        "sends": sends,
        "carts": carts.to_pandas(),
        "affinity": affinity,
        "popularity": popularity,
    }
