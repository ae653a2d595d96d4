"""Declared definitions of features that more than one layer computes: one rule, one place.

Every consumer — the snapshot (features), the model inputs (models), the rule context and
the online API (serving) — calls these functions, so a feature means the same thing in
training and in serving. Where the snapshot evaluates a rule in the engine (Ibis), the Ibis
form sits beside the numpy form and a test checks that the two agree.

Definitions
-----------
**Mean days between orders** (:func:`mean_interval_days`, :func:`mean_interval_expr`):
``(first − last) / (orders − 1)`` with ``first`` and ``last`` the days from the first and
the last order to T and ``orders`` the number of distinct orders before T (an order is its
``order_id``, or, without one, the instant of the line: lines of one customer at the same
instant form one order, :func:`order_keys`); NaN with fewer than 2 orders. Per customer it
is the ``interval_mean_days`` feature; per customer x item (or category) of repurchasable
items it is ``own_cycle_days`` (:func:`own_cycle_days`).

**Median cycle of an item** (:func:`median_cycle_days`): the median over customers with 2+
orders of their ``own_cycle_days`` for the item (or category); NaN when nobody bought it
twice. It is the snapshot's ``median_cycle_days`` and the rule context's ``cycle_days``.

**Cycle of a pair** (:func:`pair_cycle_days`): the customer's own cycle when it is known
and positive, otherwise the item's median cycle.

**Lifecycle stage** (:func:`lifecycle_stage`, :func:`lifecycle_code_expr`): the rule of
:data:`features.feature_groups.LIFECYCLE_RULE`.

**End of the data** (:func:`last_event_time`, :func:`data_end`, :func:`end_of_day`): the
latest event time of a shop, and the midnight (UTC) after it — the first instant without
data, the default cutoff T of scoring and the end of a backtest's test period.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pandas as pd

from features import contract as c
from features import feature_groups as fg
from klantbeeld.errors import ConfigError

OWN_CYCLE_DAYS = "own_cycle_days"
MEDIAN_CYCLE_DAYS = "median_cycle_days"


# --------------------------------------------------------------------------- intervals


def mean_interval_days(first_days: Any, last_days: Any, orders: Any) -> np.ndarray:
    """Mean days between a customer's orders (of everything, or of one item or category).

    Parameters
    ----------
    first_days, last_days : array-like of float
        Days from the first / the last order to T (NaN without orders).
    orders : array-like of int
        Distinct orders before T.

    Returns
    -------
    numpy.ndarray of float64
        ``(first_days - last_days) / (orders - 1)`` in days; NaN where ``orders < 2`` or an
        input is NaN.
    """
    first = np.asarray(first_days, dtype="float64")
    last = np.asarray(last_days, dtype="float64")
    n = np.asarray(orders, dtype="float64")
    out = np.full(np.broadcast(first, last, n).shape, np.nan)
    ok = (n >= 2) & np.isfinite(first) & np.isfinite(last)
    np.divide(first - last, n - 1.0, out=out, where=ok)
    return out


def mean_interval_expr(first_days: ibis.Value, last_days: ibis.Value, orders: ibis.Value) -> Any:
    """Ibis form of :func:`mean_interval_days` (the same rule, evaluated in the engine)."""
    return ibis.ifelse(orders >= 2, (first_days - last_days) / (orders.cast("float64") - 1.0), None)


def own_cycle_days(first_days: Any, last_days: Any, purchases: Any) -> np.ndarray:
    """``own_cycle_days``: a customer's mean days between orders of one item (or category).

    :func:`mean_interval_days` over the customer's distinct orders containing the item (or a
    repurchasable item of the category) before T.

    Parameters
    ----------
    first_days, last_days : array-like of float
        Days from the pair's first / last such order to T.
    purchases : array-like of int
        Distinct such orders before T.

    Returns
    -------
    numpy.ndarray of float64
        Days; NaN with fewer than 2 orders.
    """
    return mean_interval_days(first_days, last_days, purchases)


def median_cycle_days(own: Any, key: Any) -> np.ndarray:
    """``median_cycle_days``: per row, the median of ``own`` over the rows of the same key.

    Parameters
    ----------
    own : array-like of float, shape (n,)
        ``own_cycle_days`` of each customer x item (or category) pair (NaN ignored: only
        customers with 2+ orders count).
    key : array-like, shape (n,)
        Item id (or category) of each pair.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        Days; NaN where no customer bought the key twice.
    """
    values = pd.Series(np.asarray(own, dtype="float64"))
    groups = pd.Series(np.asarray(key, dtype=object))
    return values.groupby(groups, sort=False).transform("median").to_numpy(dtype="float64")


def pair_cycle_days(own: Any, median: Any) -> np.ndarray:
    """The cycle of a pair in days: its ``own_cycle_days`` when known and > 0, else the
    item's ``median_cycle_days`` (NaN when neither is known)."""
    own = np.asarray(own, dtype="float64")
    median = np.asarray(median, dtype="float64")
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(own) & (own > 0), own, median)


def order_keys(lines: pd.DataFrame) -> pd.Series:
    """The order each purchase line belongs to: ``order_id``, else the line's timestamp.

    The pandas form of :func:`features.snapshot.order_key` (lines of one customer at the
    same instant form one order).
    """
    stamp = pd.Series(pd.to_datetime(lines[c.TS]).astype(str).to_numpy(), index=lines.index)
    if c.ORDER_ID not in lines.columns:
        return stamp
    ids = lines[c.ORDER_ID]
    return ids.astype(object).where(ids.notna(), stamp)


def order_key_expr(ev: ibis.Table) -> ibis.Value:
    """Ibis form of :func:`order_keys`: ``order_id``, else the line's timestamp as text."""
    stamp = ev[c.TS].cast("string")
    return ibis.coalesce(ev[c.ORDER_ID], stamp) if c.ORDER_ID in ev.columns else stamp


def add_cycles(pairs: pd.DataFrame, key: str, as_of: datetime) -> pd.DataFrame:
    """Add ``own_cycle_days`` and ``median_cycle_days`` to per-pair purchase aggregates.

    Parameters
    ----------
    pairs : DataFrame
        One row per customer x ``key``: ``purchases`` (distinct orders), ``first_ts`` and
        ``last_ts`` (naive UTC timestamps of the first / last such order).
    key : str
        Second key column (``item_id`` or ``category``).
    as_of : datetime
        Cutoff T (naive UTC) the days are counted to.

    Returns
    -------
    DataFrame
        ``pairs`` (a copy) with the two cycle columns (days).
    """
    out = pairs.copy()
    t = pd.Timestamp(as_of).to_datetime64().astype("datetime64[us]")
    day_us = fg.SECONDS_PER_DAY * 1e6

    def days(col: str) -> np.ndarray:
        delta = t - pd.to_datetime(out[col]).to_numpy(dtype="datetime64[us]")
        return delta.astype("int64").astype("float64") / day_us

    n = out["purchases"].to_numpy(dtype="int64")
    out[OWN_CYCLE_DAYS] = own_cycle_days(days("first_ts"), days("last_ts"), n)
    out[MEDIAN_CYCLE_DAYS] = median_cycle_days(out[OWN_CYCLE_DAYS], out[key])
    return out


def purchase_cycles(lines: pd.DataFrame, key: str, as_of: datetime) -> pd.DataFrame:
    """Per customer x ``key`` the order counts and cycles of the purchase ``lines`` (pandas).

    ``lines`` holds the purchase lines before T: ``customer_id``, ``key``, ``ts`` and
    optional ``order_id``; ``key`` and ``as_of`` are as for :func:`add_cycles`.

    Returns
    -------
    DataFrame
        One row per pair, sorted by ``customer_id, key``: ``purchases`` (distinct orders),
        ``lines`` (purchase lines), ``first_ts``, ``last_ts``, ``own_cycle_days`` and
        ``median_cycle_days`` (days, :func:`add_cycles`).
    """
    frame = pd.DataFrame(
        {
            c.CUSTOMER_ID: lines[c.CUSTOMER_ID].to_numpy(),
            key: lines[key].to_numpy(),
            "_ts": pd.to_datetime(lines[c.TS]).to_numpy(dtype="datetime64[us]"),
            "_order": order_keys(lines).to_numpy() if len(lines) else np.zeros(0, object),
        }
    )
    g = frame.groupby([c.CUSTOMER_ID, key], sort=True)
    out = pd.DataFrame(
        {
            "purchases": g["_order"].nunique(),
            "lines": g.size(),
            "first_ts": g["_ts"].min(),
            "last_ts": g["_ts"].max(),
        }
    ).reset_index()
    return add_cycles(out, key, as_of)


# --------------------------------------------------------------------------- lifecycle


def lifecycle_stage(
    n_orders: Any,
    recency_days: Any,
    first_order_days: Any,
    interval_mean_days: Any,
) -> np.ndarray:
    """Lifecycle stage code per customer (index into ``LIFECYCLE_STAGES``).

    Parameters
    ----------
    n_orders : array of int
        Orders before T.
    recency_days, first_order_days : array of float
        Days from the last / first order to T (NaN without orders).
    interval_mean_days : array of float
        Mean days between orders (:func:`mean_interval_days`; NaN with fewer than 2 orders).

    Returns
    -------
    numpy.ndarray of int8
        Codes following :data:`features.feature_groups.LIFECYCLE_RULE`.
    """
    n = np.asarray(n_orders)
    rec = np.asarray(recency_days, dtype="float64")
    first = np.asarray(first_order_days, dtype="float64")
    mean = np.asarray(interval_mean_days, dtype="float64")
    idx = {name: np.int8(i) for i, name in enumerate(fg.LIFECYCLE_STAGES)}
    with np.errstate(invalid="ignore"):
        overdue = (n >= 2) & (rec > np.maximum(fg.OVERDUE_FACTOR * mean, fg.OVERDUE_MIN_DAYS))
        lapsed = (n >= 1) & ((rec > fg.LAPSED_DAYS) | overdue)
        developing = (n >= 2) & (first < fg.DEVELOPMENT_DAYS)
    return np.select(
        [n == 0, lapsed, n == 1, developing],
        [idx[fg.ACQUISITION], idx[fg.WIN_BACK], idx[fg.ACTIVATION], idx[fg.DEVELOPMENT]],
        default=idx[fg.RETENTION],
    ).astype("int8")


def lifecycle_code_expr(
    n: ibis.Value, recency: ibis.Value, first: ibis.Value, mean: ibis.Value
) -> ibis.Value:
    """Ibis form of :func:`lifecycle_stage` (the same rule, evaluated in the engine)."""
    idx = {name: i for i, name in enumerate(fg.LIFECYCLE_STAGES)}
    limit = ibis.greatest(fg.OVERDUE_FACTOR * mean, fg.OVERDUE_MIN_DAYS)
    overdue = (n >= 2) & mean.notnull() & (recency > limit)
    lapsed = (n >= 1) & ((recency > fg.LAPSED_DAYS) | overdue)
    developing = (n >= 2) & (first < fg.DEVELOPMENT_DAYS)
    return ibis.cases(
        (n == 0, idx[fg.ACQUISITION]),
        (lapsed.fill_null(False), idx[fg.WIN_BACK]),
        (n == 1, idx[fg.ACTIVATION]),
        (developing.fill_null(False), idx[fg.DEVELOPMENT]),
        else_=idx[fg.RETENTION],
    ).cast("int8")


# --------------------------------------------------------------------------- end of the data


def last_event_time(shop: Any) -> datetime | None:
    """The latest event time of ``shop`` (a :class:`features.shop.Shop`), naive UTC.

    Returns
    -------
    datetime or None
        None when the events table is empty.
    """
    e = shop.events
    hi = e.aggregate(hi=e[c.TS].max()).to_pandas().iloc[0]["hi"]
    if pd.isna(hi):
        return None
    ts = pd.Timestamp(hi)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.to_pydatetime()


def end_of_day(ts: datetime) -> datetime:
    """The midnight after ``ts`` (``ts`` at midnight gives the next midnight), naive UTC."""
    ts = pd.Timestamp(ts).to_pydatetime()
    return datetime(ts.year, ts.month, ts.day) + timedelta(days=1)


def data_end(shop: Any) -> datetime:
    """The end of ``shop``'s data: the midnight (UTC) after its latest event.

    Raises
    ------
    ConfigError
        The events table is empty (names the data source).
    """
    last = last_event_time(shop)
    if last is None:
        raise ConfigError(f"data {getattr(shop, 'source', '')} hold no events (events table)")
    return end_of_day(last)
