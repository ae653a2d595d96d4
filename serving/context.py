"""The explicit context the business rules read: customers, items, history, carts.

:class:`RecContext` holds, as of one instant ``now`` (naive UTC):

- ``customers``: one row per customer with ``consent_email`` / ``consent_ads``;
- ``items``: content fields (title, url, image_url, price EUR), category, flags
  (available = active and in stock, durable, repurchasable) and ``cycle_days``, the item's
  median days between repeat purchases over all customers;
- ``purchases``: one row per (customer, item) bought: ``last_ts``, ``n_purchases``,
  ``n_gaps`` and ``own_cycle_days`` (the customer's median days between purchases);
- ``sends``: one row per (customer, item, placement): ``last_ts`` of the latest send;
- ``carts``: open cart lines (added, not bought or removed since): customer, item, ``ts``;
- ``affinity``: customer x category weights (purchase 3, add-to-cart 2, product view 1);
- ``popularity``: item -> distinct buyers in the recent window.

On construction every table is encoded to integer codes and sorted numpy keys once, so the
rules (:mod:`serving.rules`) are vectorised look-ups (``searchsorted``/``take``) over a
candidate frame, never per-customer Python loops.

Build it from a shop with :func:`build_context` (DuckDB via Ibis) or from small pandas
frames with :meth:`RecContext.from_events` (tests, notebooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from features import contract as c

log = logging.getLogger(__name__)

DAY_NS = 86_400 * 10**9

# Names of derived columns (not part of the data contract).
LAST_TS = "last_ts"
N_PURCHASES = "n_purchases"
N_GAPS = "n_gaps"
OWN_CYCLE_DAYS = "own_cycle_days"
CYCLE_DAYS = "cycle_days"
AVAILABLE = "available"
WEIGHT = "weight"
POPULARITY = "popularity"
#: Optional extra item attributes that signal stock (extra attributes are kept by the
#: loader): ``in_stock`` (bool) or ``stock`` (units; <= 0 is out of stock).
IN_STOCK = "in_stock"
STOCK = "stock"

#: Affinity weight per event type.
AFFINITY_WEIGHTS = {c.PURCHASE: 3.0, c.ADD_TO_CART: 2.0, c.PRODUCT_VIEW: 1.0}
OVERALL = "all"


def _ns(ts: Any) -> np.ndarray:
    """Timestamps (Series/array/list) as int64 nanoseconds, NaT -> int64 min."""
    arr = pd.to_datetime(pd.Series(ts), utc=False)
    if getattr(arr.dt, "tz", None) is not None:
        arr = arr.dt.tz_convert("UTC").dt.tz_localize(None)
    return arr.astype("datetime64[ns]").to_numpy().astype("int64")


def now_ns(now: datetime) -> int:
    """A naive-UTC (or aware) datetime as int64 nanoseconds since the epoch."""
    ts = pd.Timestamp(now)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(ts.as_unit("ns").value)


def index_codes(index: pd.Index, values: Any) -> np.ndarray:
    """Position of every value in ``index`` (``-1`` when absent or missing), as int64.

    Factorises the values first, so millions of repeated ids cost one hash pass plus a
    look-up of the distinct ones; categorical input maps only its categories.
    """
    codes: np.ndarray
    uniques: Any
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        uniques = values.cat.categories
    elif isinstance(values, pd.Series | pd.Index | np.ndarray):
        codes, uniques = pd.factorize(values)
    else:
        codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    if len(uniques) == 0:
        return np.full(len(codes), -1, dtype=np.int64)
    found = index.get_indexer(pd.Index(uniques).astype(str)).astype(np.int64)
    return np.where(codes >= 0, found[np.maximum(codes, 0)], -1)


def _bool(frame: pd.DataFrame, col: str, default: bool) -> np.ndarray:
    if col not in frame.columns:
        return np.full(len(frame), default, dtype=bool)
    return frame[col].astype("boolean").fillna(default).to_numpy(dtype=bool)


@dataclass(frozen=True)
class PairTable:
    """Sorted int64 keys ``customer_code * n_items + item_code`` with aligned value arrays."""

    keys: np.ndarray
    values: dict[str, np.ndarray]

    def lookup(self, keys: np.ndarray, name: str, default: float | int) -> np.ndarray:
        """Value ``name`` for every query key; ``default`` where the key is absent."""
        return self.lookup_many(keys, {name: default})[name]

    def lookup_many(
        self, keys: np.ndarray, defaults: dict[str, float | int]
    ) -> dict[str, np.ndarray]:
        """Several value columns for every query key, with one search."""
        out = {}
        hit = np.zeros(len(keys), dtype=bool)
        at = np.zeros(len(keys), dtype=np.int64)
        if len(self.keys) and len(keys):
            at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            hit = self.keys[at] == keys
        for name, default in defaults.items():
            vals = self.values[name]
            col = np.full(len(keys), default, dtype=np.result_type(vals.dtype, type(default)))
            col[hit] = vals[at[hit]]
            out[name] = col
        return out


def _pair_table(keys: np.ndarray, values: dict[str, np.ndarray], agg_max: str | None) -> PairTable:
    """Sort by key; with ``agg_max`` keep, per duplicate key, the row with the largest value."""
    if agg_max is not None and len(keys):
        order = np.lexsort((values[agg_max], keys))
        keys = keys[order]
        last = np.r_[keys[1:] != keys[:-1], True]
        sel = order[last]
        keys = keys[last]
        return PairTable(keys, {k: v[sel] for k, v in values.items()})
    order = np.argsort(keys, kind="stable")
    return PairTable(keys[order], {k: v[order] for k, v in values.items()})


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
        available = _bool(items, c.ACTIVE, True)
        if IN_STOCK in items.columns:
            available &= _bool(items, IN_STOCK, True)
        if STOCK in items.columns:
            stock = pd.to_numeric(items[STOCK], errors="coerce").to_numpy(dtype=float)
            available &= ~(stock <= 0)
        items[AVAILABLE] = available
        items[c.DURABLE] = _bool(items, c.DURABLE, False)
        items[c.REPURCHASABLE] = _bool(items, c.REPURCHASABLE, False)
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
        self.consent = {col: _bool(cust, col, False) for col in (c.CONSENT_EMAIL, c.CONSENT_ADS)}

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
                LAST_TS: _ns(p[LAST_TS])[ok],
                N_GAPS: p[N_GAPS].fillna(0).to_numpy(dtype=np.int64)[ok],
                OWN_CYCLE_DAYS: p[OWN_CYCLE_DAYS].astype("float64").to_numpy()[ok],
            }
        else:
            vals = {
                LAST_TS: np.empty(0, np.int64),
                N_GAPS: np.empty(0, np.int64),
                OWN_CYCLE_DAYS: np.empty(0, float),
            }
        self.purchase_pairs = _pair_table(keys[ok], vals, agg_max=LAST_TS)

        s = self.sends
        keys, ok = self._encoded_pairs(s)
        ts = _ns(s[LAST_TS])[ok] if len(s) else np.empty(0, np.int64)
        self.send_pairs = _pair_table(keys[ok], {LAST_TS: ts}, agg_max=LAST_TS)
        self._send_pairs_by_placement: dict[str, PairTable] = {}

        cart = self.carts
        cc = self.customer_codes(cart[c.CUSTOMER_ID]) if len(cart) else np.empty(0, np.int64)
        ic = self.item_codes(cart[c.ITEM_ID]) if len(cart) else np.empty(0, np.int64)
        ok = (cc >= 0) & (ic >= 0)
        cts = _ns(cart[c.TS]) if len(cart) else np.empty(0, np.int64)
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
            ts = _ns(s[LAST_TS])[ok] if len(s) else np.empty(0, np.int64)
            self._send_pairs_by_placement[placement] = _pair_table(
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
            Contract events: ``customer_id, ts, event_type, item_id``.
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
        ev = events[[c.CUSTOMER_ID, c.TS, c.EVENT_TYPE, c.ITEM_ID]].copy()
        ev[c.TS] = pd.to_datetime(ev[c.TS])
        ev = ev[(ev[c.TS] <= now_ts) & ev[c.ITEM_ID].notna()]
        buys = ev[ev[c.EVENT_TYPE] == c.PURCHASE]
        purchases, cycles = _purchase_summary(buys)
        items = items.drop(columns=[CYCLE_DAYS], errors="ignore").merge(
            cycles, on=c.ITEM_ID, how="left"
        )
        if sends is None or len(sends) == 0 or c.ITEM_ID not in sends.columns:
            send_sum = pd.DataFrame(
                {c.CUSTOMER_ID: [], c.ITEM_ID: [], c.PLACEMENT: [], LAST_TS: []}
            )
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
        carts = _open_carts(ev, now_ts - timedelta(days=cart_days))
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
        return cls(
            now=now_ts.to_pydatetime(),
            customers=customers,
            items=items,
            purchases=purchases,
            sends=send_sum,
            carts=carts,
            affinity=affinity,
            popularity=popularity,
            pool_size=pool_size,
        )


def _purchase_summary(buys: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customer, item) purchase summary and the per-item median cycle (days).

    Gaps are counted between distinct purchase days of the same customer and item.
    """
    cols = [c.CUSTOMER_ID, c.ITEM_ID, LAST_TS, N_PURCHASES, N_GAPS, OWN_CYCLE_DAYS]
    if len(buys) == 0:
        return pd.DataFrame({k: [] for k in cols}), pd.DataFrame({c.ITEM_ID: [], CYCLE_DAYS: []})
    b = buys[[c.CUSTOMER_ID, c.ITEM_ID, c.TS]].copy()
    b["_day"] = b[c.TS].dt.floor("D")
    days = (
        b.groupby([c.CUSTOMER_ID, c.ITEM_ID, "_day"])[c.TS]
        .max()
        .reset_index()
        .sort_values([c.CUSTOMER_ID, c.ITEM_ID, "_day"])
    )
    prev = days.groupby([c.CUSTOMER_ID, c.ITEM_ID])["_day"].shift()
    days["_gap"] = (days["_day"] - prev).dt.days.astype("float64")
    g = days.groupby([c.CUSTOMER_ID, c.ITEM_ID])
    summary = pd.DataFrame(
        {
            LAST_TS: g[c.TS].max(),
            N_PURCHASES: b.groupby([c.CUSTOMER_ID, c.ITEM_ID]).size(),
            N_GAPS: g["_gap"].count(),
            OWN_CYCLE_DAYS: g["_gap"].median(),
        }
    ).reset_index()
    cycles = days.groupby(c.ITEM_ID)["_gap"].median().rename(CYCLE_DAYS).reset_index()
    return summary[cols], cycles


def _open_carts(ev: pd.DataFrame, since: pd.Timestamp) -> pd.DataFrame:
    """Add-to-cart lines after ``since`` with no later purchase or removal of the item."""
    adds = ev[(ev[c.EVENT_TYPE] == c.ADD_TO_CART) & (ev[c.TS] > since)]
    adds = adds.groupby([c.CUSTOMER_ID, c.ITEM_ID])[c.TS].max().reset_index()
    ends = ev[ev[c.EVENT_TYPE].isin([c.PURCHASE, c.REMOVE_FROM_CART])]
    closing = ends.groupby([c.CUSTOMER_ID, c.ITEM_ID])[c.TS].max().rename("_closed")
    out = adds.merge(closing.reset_index(), on=[c.CUSTOMER_ID, c.ITEM_ID], how="left")
    out = out[out["_closed"].isna() | (out["_closed"] < out[c.TS])]
    return out[[c.CUSTOMER_ID, c.ITEM_ID, c.TS]].reset_index(drop=True)


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
        Reference instant (naive UTC); default the latest event time. Events and sends
        after it are ignored.
    popular_days, affinity_days, cart_days : int
        Windows (days before ``now``) for popularity, category affinity and open carts.
    pool_size : int
        Popular items kept per segment for the fallback.

    Returns
    -------
    RecContext
    """
    import ibis

    e = shop.events
    if now is None:
        now = pd.Timestamp(e[c.TS].max().execute()).to_pydatetime()
    now_lit = ibis.literal(pd.Timestamp(now).to_pydatetime().replace(tzinfo=None))
    ev = e.filter(e[c.TS] <= now_lit, e[c.ITEM_ID].notnull())

    cust_cols = [
        col
        for col in (c.CUSTOMER_ID, c.CONSENT_EMAIL, c.CONSENT_ADS)
        if col in shop.customers.columns
    ]
    customers = shop.customers.select(cust_cols).to_pandas()
    items = shop.items.to_pandas()

    # Purchase summary: distinct purchase days per (customer, item), gaps between them.
    buys = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
    day = buys[c.TS].truncate("D").name("_day")
    per_day = buys.group_by([buys[c.CUSTOMER_ID], buys[c.ITEM_ID], day]).aggregate(
        **{c.TS: buys[c.TS].max(), "_n": buys.count()}
    )
    w = ibis.window(group_by=[per_day[c.CUSTOMER_ID], per_day[c.ITEM_ID]], order_by=per_day._day)
    gaps = per_day.mutate(
        _gap=(per_day._day.epoch_seconds() - per_day._day.lag().over(w).epoch_seconds()) / 86400.0
    )
    purchases = (
        gaps.group_by([c.CUSTOMER_ID, c.ITEM_ID])
        .aggregate(
            **{
                LAST_TS: gaps[c.TS].max(),
                N_PURCHASES: gaps._n.sum(),
                N_GAPS: gaps._gap.count(),
                OWN_CYCLE_DAYS: gaps._gap.median(),
            }
        )
        .to_pandas()
    )
    cycles = gaps.group_by(c.ITEM_ID).aggregate(**{CYCLE_DAYS: gaps._gap.median()}).to_pandas()
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

    cart_since = ibis.literal(
        (pd.Timestamp(now) - pd.Timedelta(days=cart_days)).to_pydatetime().replace(tzinfo=None)
    )
    adds = ev.filter(ev[c.EVENT_TYPE] == c.ADD_TO_CART, ev[c.TS] > cart_since)
    adds = adds.group_by([c.CUSTOMER_ID, c.ITEM_ID]).aggregate(**{c.TS: adds[c.TS].max()})
    closing = ev.filter(ev[c.EVENT_TYPE].isin([c.PURCHASE, c.REMOVE_FROM_CART]))
    closing = closing.group_by([c.CUSTOMER_ID, c.ITEM_ID]).aggregate(_closed=closing[c.TS].max())
    carts = adds.left_join(closing, [c.CUSTOMER_ID, c.ITEM_ID])
    carts = carts.filter(carts._closed.isnull() | (carts._closed < carts[c.TS])).select(
        c.CUSTOMER_ID, c.ITEM_ID, c.TS
    )
    carts_df = carts.to_pandas()

    aff_since = ibis.literal(
        (pd.Timestamp(now) - pd.Timedelta(days=affinity_days)).to_pydatetime().replace(tzinfo=None)
    )
    recent = ev.filter(ev[c.TS] > aff_since, ev[c.EVENT_TYPE].isin(list(AFFINITY_WEIGHTS)))
    weight = ibis.cases(
        *[(recent[c.EVENT_TYPE] == k, v) for k, v in AFFINITY_WEIGHTS.items()], else_=0.0
    )
    it = shop.items.select(c.ITEM_ID, c.CATEGORY)
    joined = recent.mutate(_w=weight).join(it, c.ITEM_ID)
    affinity = (
        joined.group_by([c.CUSTOMER_ID, c.CATEGORY]).aggregate(**{WEIGHT: joined._w.sum()})
    ).to_pandas()

    pop_since = ibis.literal(
        (pd.Timestamp(now) - pd.Timedelta(days=popular_days)).to_pydatetime().replace(tzinfo=None)
    )
    pb = buys.filter(buys[c.TS] > pop_since)
    popularity = (
        pb.group_by(c.ITEM_ID).aggregate(**{POPULARITY: pb[c.CUSTOMER_ID].nunique()}).to_pandas()
    )
    log.info(
        "rule context as of %s: %d customers, %d items, %d purchased pairs, %d sent pairs",
        now,
        len(customers),
        len(items),
        len(purchases),
        len(sends),
    )
    return RecContext(
        now=pd.Timestamp(now).to_pydatetime(),
        customers=customers,
        items=items,
        purchases=purchases,
        sends=sends,
        carts=carts_df,
        affinity=affinity,
        popularity=popularity,
        pool_size=pool_size,
    )


__all__ = ["RecContext", "PairTable", "build_context", "now_ns"]
