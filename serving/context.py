"""The explicit context the business rules read: customers, items, history, carts.

:class:`RecContext` holds, as of one instant ``now`` (naive UTC):

- ``customers``: one row per customer with ``consent_email`` / ``consent_ads``;
- ``items``: content fields (title, url, image_url, price EUR), category, flags
  (available = active and in stock, durable, repurchasable) and ``cycle_days``, the item's
  median cycle: the median over customers with 2+ orders of their ``own_cycle_days``
  (:func:`features.definitions.median_cycle_days`, the snapshot's ``median_cycle_days``);
- ``purchases``: one row per (customer, item) bought: ``last_ts``, ``n_purchases``,
  ``n_gaps`` (distinct orders - 1) and ``own_cycle_days``, the customer's mean days between
  orders of the item (:func:`features.definitions.own_cycle_days`, the same definition as
  the snapshot's feature);
- ``sends``: one row per (customer, item, placement): ``last_ts`` of the latest send;
- ``carts``: open cart lines (added, not bought or removed since): customer, item, ``ts``;
- ``affinity``: customer x category weights (purchase 3, add-to-cart 2, product view 1);
- ``popularity``: item -> distinct buyers in the recent window.

On construction every table is encoded to integer codes and sorted numpy keys once
(:mod:`serving.context_tables`), so the rules (:mod:`serving.rules`) are vectorised
look-ups (``searchsorted``/``take``) over a candidate frame, never per-customer Python loops.

Build it from a shop with :func:`build_context` (DuckDB via Ibis) or from small pandas
frames with :meth:`RecContext.from_events` (tests, notebooks); both compute the history
tables with :mod:`serving.context_history`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import contract as c
from features.definitions import last_event_time
from serving.context_history import history_from_events, history_from_shop
from serving.context_tables import (
    AFFINITY_WEIGHTS,
    AVAILABLE,
    CYCLE_DAYS,
    DAY_NS,
    IN_STOCK,
    LAST_TS,
    N_GAPS,
    N_PURCHASES,
    OVERALL,
    OWN_CYCLE_DAYS,
    POPULARITY,
    STOCK,
    WEIGHT,
    PairTable,
    bool_column,
    index_codes,
    now_ns,
    ns,
    pair_table,
)

log = logging.getLogger(__name__)

__all__ = [
    "AFFINITY_WEIGHTS",
    "AVAILABLE",
    "CYCLE_DAYS",
    "DAY_NS",
    "IN_STOCK",
    "LAST_TS",
    "N_GAPS",
    "N_PURCHASES",
    "OVERALL",
    "OWN_CYCLE_DAYS",
    "POPULARITY",
    "STOCK",
    "WEIGHT",
    "PairTable",
    "RecContext",
    "build_context",
    "index_codes",
    "now_ns",
]


@dataclass
class RecContext:
    """Everything the rules need about customers, items and history, encoded once.

    Parameters
    ----------
    now : datetime
        Reference instant (naive UTC); "days since" are counted from here.
    customers : DataFrame
        ``customer_id`` and optional ``consent_email``, ``consent_ads`` (missing -> no consent).
    items : DataFrame
        ``item_id``, ``title``, ``category`` and optional ``price`` (EUR), ``url``,
        ``image_url``, ``active`` (missing -> True), ``durable``, ``repurchasable``
        (missing -> False), ``in_stock``/``stock``, ``cycle_days`` (days, NaN unknown).
    purchases : DataFrame
        Purchase summary: ``customer_id, item_id, last_ts, n_purchases, n_gaps,
        own_cycle_days``.
    sends : DataFrame
        ``customer_id, item_id, placement, last_ts`` (placement may be missing).
    carts : DataFrame
        Open cart lines ``customer_id, item_id, ts``.
    affinity : DataFrame
        ``customer_id, category, weight``.
    popularity : DataFrame
        ``item_id, popularity`` (distinct recent buyers).
    pool_size : int
        Popular items kept per segment (and overall) for the fallback.
    """

    now: datetime
    customers: pd.DataFrame
    items: pd.DataFrame
    purchases: pd.DataFrame
    sends: pd.DataFrame
    carts: pd.DataFrame
    affinity: pd.DataFrame
    popularity: pd.DataFrame
    pool_size: int = 100
    # Encoded state, filled by __post_init__.
    customer_index: pd.Index = field(init=False, repr=False)
    item_index: pd.Index = field(init=False, repr=False)
    category_index: pd.Index = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {self.pool_size}")
        self.now = pd.Timestamp(self.now).to_pydatetime().replace(tzinfo=None)
        self.now_ns = now_ns(self.now)
        self._encode_items()
        self._encode_customers()
        self._encode_history()
        self._encode_affinity_and_pools()

    # -- encoding ---------------------------------------------------------------------
    def _encode_items(self) -> None:
        items = self.items.drop_duplicates(c.ITEM_ID).reset_index(drop=True)
        for col in (c.URL, c.IMAGE_URL, c.TITLE):
            if col not in items.columns:
                items[col] = None
        if c.PRICE not in items.columns:
            items[c.PRICE] = np.nan
        items[c.PRICE] = items[c.PRICE].astype("float64")
        available = bool_column(items, c.ACTIVE, True)
        if IN_STOCK in items.columns:
            available &= bool_column(items, IN_STOCK, True)
        if STOCK in items.columns:
            stock = pd.to_numeric(items[STOCK], errors="coerce").to_numpy(dtype=float)
            available &= ~(stock <= 0)
        items[AVAILABLE] = available
        items[c.DURABLE] = bool_column(items, c.DURABLE, False)
        items[c.REPURCHASABLE] = bool_column(items, c.REPURCHASABLE, False)
        if CYCLE_DAYS not in items.columns:
            items[CYCLE_DAYS] = np.nan
        self.items = items
        self.item_index = pd.Index(items[c.ITEM_ID].astype(str).to_numpy(dtype=object))
        self.item_id_values = self.item_index.to_numpy(dtype=object)  # for output rows
        self.category_index = pd.Index(pd.unique(items[c.CATEGORY].astype(str)))
        self.n_items = len(items)
        self.item_category = self.category_index.get_indexer(
            pd.Index(items[c.CATEGORY].astype(str))
        )
        self.item_available = available
        self.item_durable = items[c.DURABLE].to_numpy(dtype=bool)
        self.item_repurchasable = items[c.REPURCHASABLE].to_numpy(dtype=bool)
        self.item_price = items[c.PRICE].to_numpy(dtype=float)
        self.item_cycle = items[CYCLE_DAYS].astype("float64").to_numpy()
        self.item_content = {
            col: items[col].to_numpy(dtype=float)
            if col == c.PRICE
            else items[col].astype(object).where(items[col].notna(), None).to_numpy(dtype=object)
            for col in (c.TITLE, c.URL, c.IMAGE_URL, c.PRICE, c.CATEGORY)
        }

    def _encode_customers(self) -> None:
        cust = self.customers.drop_duplicates(c.CUSTOMER_ID).reset_index(drop=True)
        self.customers = cust
        self.customer_index = pd.Index(cust[c.CUSTOMER_ID].astype(str).to_numpy(dtype=object))
        self.consent = {
            col: bool_column(cust, col, False) for col in (c.CONSENT_EMAIL, c.CONSENT_ADS)
        }

    def customer_codes(self, ids: Any) -> np.ndarray:
        """Codes of customer ids (``-1`` for unknown customers)."""
        return index_codes(self.customer_index, ids)

    def item_codes(self, ids: Any) -> np.ndarray:
        """Codes of item ids (``-1`` for unknown items); fast for categorical input."""
        return index_codes(self.item_index, ids)

    def item_codes_for(self, index: pd.Index) -> np.ndarray:
        """Codes of every id of ``index`` (a model's item catalogue), cached per index object.

        A recommender's item positions map to context codes by one ``take`` through this
        array; it is computed once per (context, index) pair, not per request.
        """
        cache = self.__dict__.setdefault("_item_code_cache", {})
        hit = cache.get(id(index))
        if hit is None or hit[0] is not index:
            hit = (index, index_codes(self.item_index, index))  # keeps the index alive
            cache[id(index)] = hit
        return hit[1]

    def pair_keys(self, customer_codes: np.ndarray, item_codes: np.ndarray) -> np.ndarray:
        """int64 keys of (customer, item) code pairs; ``-1`` where either code is unknown."""
        keys = customer_codes.astype(np.int64) * self.n_items + item_codes
        return np.where((customer_codes < 0) | (item_codes < 0), -1, keys)

    def _encoded_pairs(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        cc = self.customer_codes(frame[c.CUSTOMER_ID]) if len(frame) else np.empty(0, np.int64)
        ic = self.item_codes(frame[c.ITEM_ID]) if len(frame) else np.empty(0, np.int64)
        ok = (cc >= 0) & (ic >= 0)
        return self.pair_keys(cc, ic), ok

    def _encode_history(self) -> None:
        p = self.purchases
        keys, ok = self._encoded_pairs(p)
        if len(p):
            vals = {
                LAST_TS: ns(p[LAST_TS])[ok],
                N_GAPS: p[N_GAPS].fillna(0).to_numpy(dtype=np.int64)[ok],
                OWN_CYCLE_DAYS: p[OWN_CYCLE_DAYS].astype("float64").to_numpy()[ok],
            }
        else:
            vals = {
                LAST_TS: np.empty(0, np.int64),
                N_GAPS: np.empty(0, np.int64),
                OWN_CYCLE_DAYS: np.empty(0, float),
            }
        self.purchase_pairs = pair_table(keys[ok], vals, agg_max=LAST_TS)

        s = self.sends
        keys, ok = self._encoded_pairs(s)
        ts = ns(s[LAST_TS])[ok] if len(s) else np.empty(0, np.int64)
        self.send_pairs = pair_table(keys[ok], {LAST_TS: ts}, agg_max=LAST_TS)
        self._send_pairs_by_placement: dict[str, PairTable] = {}

        cart = self.carts
        cc = self.customer_codes(cart[c.CUSTOMER_ID]) if len(cart) else np.empty(0, np.int64)
        ic = self.item_codes(cart[c.ITEM_ID]) if len(cart) else np.empty(0, np.int64)
        ok = (cc >= 0) & (ic >= 0)
        cts = ns(cart[c.TS]) if len(cart) else np.empty(0, np.int64)
        self.cart_customer, self.cart_item, self.cart_ts = cc[ok], ic[ok], cts[ok]

    def sends_for_placement(self, placement: str) -> PairTable:
        """Latest send per (customer, item) counting only sends of ``placement``."""
        if placement not in self._send_pairs_by_placement:
            s = self.sends
            if c.PLACEMENT in s.columns and len(s):
                s = s[s[c.PLACEMENT].astype(str) == placement]
            else:
                s = s.iloc[:0]
            keys, ok = self._encoded_pairs(s)
            ts = ns(s[LAST_TS])[ok] if len(s) else np.empty(0, np.int64)
            self._send_pairs_by_placement[placement] = pair_table(
                keys[ok], {LAST_TS: ts}, agg_max=LAST_TS
            )
        return self._send_pairs_by_placement[placement]

    def _encode_affinity_and_pools(self) -> None:
        a = self.affinity
        n_cat = len(self.category_index)
        if len(a):
            rows = self.customer_codes(a[c.CUSTOMER_ID])
            cols = self.category_index.get_indexer(pd.Index(a[c.CATEGORY].astype(str)))
            w = a[WEIGHT].to_numpy(dtype=float)
            ok = (rows >= 0) & (cols >= 0) & (w > 0)
            mat = sp.csr_matrix(
                (w[ok], (rows[ok], cols[ok])), shape=(len(self.customer_index), n_cat)
            )
        else:
            mat = sp.csr_matrix((len(self.customer_index), n_cat))
        mat.sum_duplicates()
        self.affinity_matrix = mat
        # Segment = top category (ties -> first category in item order); -1 without affinity.
        seg = np.asarray(mat.argmax(axis=1)).ravel().astype(np.int64)
        has = np.asarray(mat.getnnz(axis=1)).ravel() > 0
        self.customer_segment = np.where(has, seg, -1)

        pop = np.zeros(self.n_items, dtype=float)
        if len(self.popularity):
            codes = self.item_codes(self.popularity[c.ITEM_ID])
            ok = codes >= 0
            np.add.at(pop, codes[ok], self.popularity[POPULARITY].to_numpy(dtype=float)[ok])
        self.item_popularity = pop
        # Pools: row k < n_cat = popular items of category k, row n_cat = overall; -1 padded.
        cand = np.flatnonzero(self.item_available & (pop > 0))
        order = cand[np.lexsort((cand, -pop[cand]))]
        size = self.pool_size
        pools = np.full((n_cat + 1, size), -1, dtype=np.int64)
        top = order[:size]
        pools[n_cat, : len(top)] = top
        if len(order):
            cats = self.item_category[order]
            by_cat = np.argsort(cats, kind="stable")
            sorted_cats = cats[by_cat]
            starts = np.searchsorted(sorted_cats, np.arange(n_cat))
            ends = np.searchsorted(sorted_cats, np.arange(n_cat), side="right")
            for k in range(n_cat):  # one pass per category (not per customer)
                members = order[by_cat[starts[k] : min(ends[k], starts[k] + size)]]
                pools[k, : len(members)] = members
        self.pools = pools
        total = pop.sum()
        self.item_pop_share = pop / total if total > 0 else pop

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_events(
        cls,
        now: datetime,
        customers: pd.DataFrame,
        items: pd.DataFrame,
        events: pd.DataFrame,
        sends: pd.DataFrame | None = None,
        *,
        popular_days: int = 30,
        affinity_days: int = 365,
        cart_days: int = 30,
        pool_size: int = 100,
    ) -> RecContext:
        """Build a context from plain event rows in pandas (tests, notebooks, small shops).

        Parameters
        ----------
        now : datetime
            Reference instant; events after it are ignored (point in time).
        customers, items : DataFrame
            Contract tables (see class docstring for the columns used).
        events : DataFrame
            Contract events: ``customer_id, ts, event_type, item_id`` (and ``order_id``,
            which decides the orders behind ``own_cycle_days``).
        sends : DataFrame, optional
            Contract sends: ``customer_id, ts, item_id`` and optional ``placement``.
        popular_days, affinity_days, cart_days : int
            Windows (days before ``now``) for popularity, category affinity and open carts.
        pool_size : int
            Popular items kept per segment for the fallback.

        Returns
        -------
        RecContext
        """
        now_ts = pd.Timestamp(now)
        history = history_from_events(
            now_ts.to_pydatetime(),
            items,
            events,
            sends,
            popular_days=popular_days,
            affinity_days=affinity_days,
            cart_days=cart_days,
        )
        return cls(now=now_ts.to_pydatetime(), customers=customers, pool_size=pool_size, **history)


def build_context(
    shop: Any,
    now: datetime | None = None,
    *,
    popular_days: int = 30,
    affinity_days: int = 365,
    cart_days: int = 30,
    pool_size: int = 100,
) -> RecContext:
    """Build the rule context from a :class:`features.shop.Shop` (aggregates run in DuckDB).

    Parameters
    ----------
    shop : features.shop.Shop
        Validated contract tables.
    now : datetime, optional
        Reference instant (naive UTC); default the latest event time
        (:func:`features.definitions.last_event_time`). Events and sends after it are
        ignored.
    popular_days, affinity_days, cart_days : int
        Windows (days before ``now``) for popularity, category affinity and open carts.
    pool_size : int
        Popular items kept per segment for the fallback.

    Returns
    -------
    RecContext
    """
    if now is None:
        now = last_event_time(shop)
        if now is None:
            raise ValueError(f"data {getattr(shop, 'source', '')} hold no events to build on")
    history = history_from_shop(
        shop, now, popular_days=popular_days, affinity_days=affinity_days, cart_days=cart_days
    )
    log.info(
        "rule context as of %s: %d customers, %d items, %d purchased pairs, %d sent pairs",
        now,
        len(history["customers"]),
        len(history["items"]),
        len(history["purchases"]),
        len(history["sends"]),
    )
    return RecContext(now=pd.Timestamp(now).to_pydatetime(), pool_size=pool_size, **history)
