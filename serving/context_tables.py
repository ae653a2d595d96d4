"""Encoded look-up tables of the rule context: integer codes and sorted pair keys.

The rule context (:mod:`serving.context`) turns ids into integer codes once
(:func:`index_codes`) and (customer, item) pairs into sorted int64 keys with aligned value
arrays (:class:`PairTable`), so the rules are ``searchsorted``/``take`` look-ups. The
column names of the context's derived tables live here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.definitions import OWN_CYCLE_DAYS as _OWN_CYCLE_DAYS

DAY_NS = 86_400 * 10**9

# Names of derived columns (not part of the data contract).
LAST_TS = "last_ts"
N_PURCHASES = "n_purchases"
N_GAPS = "n_gaps"
OWN_CYCLE_DAYS = _OWN_CYCLE_DAYS
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


def ns(ts: Any) -> np.ndarray:
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


def bool_column(frame: pd.DataFrame, col: str, default: bool) -> np.ndarray:
    """Column ``col`` of ``frame`` as bool, missing values (or a missing column) -> ``default``."""
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


def pair_table(keys: np.ndarray, values: dict[str, np.ndarray], agg_max: str | None) -> PairTable:
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
