"""Build the user × item matrices the recommenders read, from a shop's events.

Shop ids (strings) map to integer positions through :class:`IdMap`; every matrix here is
a ``csr_matrix`` of shape ``(n_users, n_items)`` in those positions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy import sparse

from features import contract as c
from features.definitions import MEDIAN_CYCLE_DAYS, purchase_cycles

_DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class IdMap:
    """Positions of customers (rows) and items (columns).

    Attributes
    ----------
    users : pd.Index
        Customer ids; position ``u`` is row ``u``.
    items : pd.Index
        Item ids; position ``i`` is column ``i``.
    """

    users: pd.Index
    items: pd.Index

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_users, n_items)``."""
        return len(self.users), len(self.items)

    def user_pos(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row position of each customer id, ``-1`` for unknown ids."""
        return self.users.get_indexer(pd.Index(ids)).astype(np.int64)

    def item_pos(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Column position of each item id, ``-1`` for unknown ids."""
        return self.items.get_indexer(pd.Index(ids)).astype(np.int64)


def load_events(
    shop, *, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """Item events of ``shop`` with ``start <= ts < end`` as a DataFrame.

    Returns
    -------
    pd.DataFrame
        Columns ``customer_id, item_id, event_type, ts`` (events without an item dropped).
    """
    ev = shop.events.filter(shop.events[c.ITEM_ID].notnull())
    if start is not None:
        ev = ev.filter(ev[c.TS] >= start)
    if end is not None:
        ev = ev.filter(ev[c.TS] < end)
    df = ev.select(c.CUSTOMER_ID, c.ITEM_ID, c.EVENT_TYPE, c.TS).to_pandas()
    df[c.TS] = pd.to_datetime(df[c.TS])
    return df


def _positions(events: pd.DataFrame, ids: IdMap) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u = ids.user_pos(events[c.CUSTOMER_ID].to_numpy())
    i = ids.item_pos(events[c.ITEM_ID].to_numpy())
    ok = (u >= 0) & (i >= 0)
    return u, i, ok


def interaction_matrix(
    events: pd.DataFrame, ids: IdMap, weights: Mapping[str, float]
) -> sparse.csr_matrix:
    """Sum of event weights per (customer, item): the confidence input of the sources.

    Parameters
    ----------
    events : pd.DataFrame
        ``customer_id, item_id, event_type`` rows (see :func:`load_events`).
    ids : IdMap
    weights : mapping of event type to weight
        Event types absent from the mapping (or with weight 0) are ignored.

    Returns
    -------
    csr_matrix of float32, shape ``ids.shape``
    """
    if not weights or all(v <= 0 for v in weights.values()):
        raise ValueError("weights must give at least one event type a positive weight")
    w = events[c.EVENT_TYPE].map(dict(weights)).fillna(0.0).to_numpy(dtype=np.float64)
    u, i, ok = _positions(events, ids)
    ok &= w > 0
    m = sparse.csr_matrix((w[ok], (u[ok], i[ok])), shape=ids.shape, dtype=np.float64)
    m.sum_duplicates()
    return m.astype(np.float32)


def _last_ts(events: pd.DataFrame, ids: IdMap, types: Sequence[str]) -> pd.DataFrame:
    sub = events[events[c.EVENT_TYPE].isin(list(types))]
    u, i, ok = _positions(sub, ids)
    df = pd.DataFrame({"u": u[ok], "i": i[ok], "ts": sub[c.TS].to_numpy()[ok]})
    return df.groupby(["u", "i"], sort=True)["ts"].max().reset_index()


def _days_before(ts: np.ndarray, as_of: datetime) -> np.ndarray:
    delta = pd.Timestamp(as_of).to_datetime64().astype("datetime64[ns]") - ts.astype(
        "datetime64[ns]"
    )
    return np.maximum(delta.astype(np.int64) / _DAY_NS, 0.0)


def recency_matrix(
    events: pd.DataFrame,
    ids: IdMap,
    as_of: datetime,
    half_life_days: float = 14.0,
    event_types: Sequence[str] = (c.PRODUCT_VIEW, c.ADD_TO_CART),
) -> sparse.csr_matrix:
    """``0.5 ** (days since the last event of event_types / half_life_days)`` per pair.

    Input for :class:`~models.recommender.recent.RecentlyViewedRecommender`; the value is
    a probability-like recency in (0, 1], 1 for an event at ``as_of``.
    """
    last = _last_ts(events, ids, event_types)
    val = 0.5 ** (_days_before(last["ts"].to_numpy(), as_of) / half_life_days)
    return sparse.csr_matrix(
        (val.astype(np.float32), (last["u"], last["i"])), shape=ids.shape, dtype=np.float32
    )


def purchase_age_matrix(events: pd.DataFrame, ids: IdMap, as_of: datetime) -> sparse.csr_matrix:
    """``1 + days since the last purchase`` per (customer, item) bought before ``as_of``.

    Input for :class:`~models.recommender.buy_again.BuyAgainRecommender`.
    """
    last = _last_ts(events, ids, (c.PURCHASE,))
    val = 1.0 + _days_before(last["ts"].to_numpy(), as_of)
    return sparse.csr_matrix(
        (val.astype(np.float32), (last["u"], last["i"])), shape=ids.shape, dtype=np.float32
    )


def item_cycle_days(events: pd.DataFrame, ids: IdMap) -> np.ndarray:
    """The median cycle of every item: :func:`features.definitions.median_cycle_days`.

    The median over customers with 2+ orders of the item of their mean days between those
    orders (``own_cycle_days``; an order is its ``order_id``, else the purchase instant).

    Returns
    -------
    ndarray of float64, shape (n_items,)
        Days; NaN for items nobody bought twice.
    """
    buys = events[events[c.EVENT_TYPE] == c.PURCHASE]
    u, i, ok = _positions(buys, ids)
    lines = pd.DataFrame({c.CUSTOMER_ID: u[ok], c.ITEM_ID: i[ok], c.TS: buys[c.TS].to_numpy()[ok]})
    if c.ORDER_ID in buys.columns:
        lines[c.ORDER_ID] = buys[c.ORDER_ID].to_numpy()[ok]
    out = np.full(ids.shape[1], np.nan)
    if len(lines) == 0:
        return out
    cycles = purchase_cycles(lines, c.ITEM_ID, lines[c.TS].max())
    med = cycles.groupby(c.ITEM_ID)[MEDIAN_CYCLE_DAYS].first()
    out[med.index.to_numpy(dtype=np.int64)] = med.to_numpy(dtype=np.float64)
    return out


def id_map_from_shop(shop) -> IdMap:
    """Every customer and every item of ``shop``, in sorted id order."""
    users = shop.customers.select(c.CUSTOMER_ID).to_pandas()[c.CUSTOMER_ID]
    items = shop.items.select(c.ITEM_ID).to_pandas()[c.ITEM_ID]
    return IdMap(
        pd.Index(np.sort(users.astype(str).to_numpy())),
        pd.Index(np.sort(items.astype(str).to_numpy())),
    )
