"""Labels of the expected-purchases / CLV model: orders and their value after T.

A label at T reads only the label window ``[T, T + H)`` (events with ``T <= ts < T + H``);
orders are formed as in the snapshot (:func:`features.snapshot.order_key`: ``order_id``,
else lines of one customer at the same instant).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import ibis
import numpy as np
import pandas as pd

from features import contract as c
from features.snapshot import _VALUE_CENTS, events_between, normalize_as_of, order_key

PURCHASES = "purchases"
REVENUE = "revenue"


def purchase_labels(shop: Any, as_of: datetime | date | str, horizon_days: int) -> pd.DataFrame:
    """Orders and their value per customer in the ``horizon_days`` days from T.

    Parameters
    ----------
    shop : features.shop.Shop
        Opened shop.
    as_of : datetime, date or ISO string
        T (naive UTC; a date means midnight).
    horizon_days : int
        Label window ``[T, T + horizon_days)`` in days (>= 1).

    Returns
    -------
    pandas.DataFrame
        One row per customer created before T, sorted by ``customer_id``: ``purchases``
        (int64, orders in the window; 0 when none) and ``revenue`` (float64, EUR, sum of
        purchase ``value`` in the window, summed in whole cents; returns not netted).
    """
    if not isinstance(horizon_days, int | np.integer) or horizon_days < 1:
        raise ValueError(f"horizon_days must be a positive whole number, got {horizon_days!r}")
    as_of = normalize_as_of(as_of)
    ev = events_between(shop, as_of, as_of + timedelta(days=int(horizon_days)))
    p = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
    p = p.mutate(_order=order_key(p))
    orders = p.aggregate(
        by=[c.CUSTOMER_ID],
        _n=p["_order"].nunique(),
        _cents=p[_VALUE_CENTS].sum(),
    )
    cu = shop.customers
    pop = cu.filter(cu[c.CREATED_AT] < ibis.literal(as_of, type="timestamp")).select(c.CUSTOMER_ID)
    j = pop.left_join(orders, c.CUSTOMER_ID).select(c.CUSTOMER_ID, "_n", "_cents")
    df = j.order_by(c.CUSTOMER_ID).to_pyarrow().to_pandas()
    return pd.DataFrame(
        {
            c.CUSTOMER_ID: df[c.CUSTOMER_ID].astype(str).to_numpy(),
            PURCHASES: df["_n"].fillna(0).to_numpy(dtype=np.int64),
            REVENUE: df["_cents"].fillna(0).to_numpy(dtype=np.float64) / 100.0,
        }
    )
