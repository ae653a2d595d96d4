"""RFM segments: recency, frequency and monetary quintile scores and classic segment names.

Customers with at least one order in the 365 days before the snapshot are ranked:
``rfm_r`` (5 = bought most recently), ``rfm_f`` (5 = most orders in 365 days), ``rfm_m``
(5 = most spend in 365 days), ties sharing the average rank; everyone else scores 0 and
is in segment ``none``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: RFM segment names, in the order their conditions are tried (see :func:`rfm_segment`).
RFM_SEGMENTS = (
    "none",
    "champions",
    "loyal",
    "new",
    "promising",
    "at_risk",
    "hibernating",
    "needs_attention",
)
RFM_INPUTS = ("recency_days", "orders_365d", "monetary_365d")


def _quintile(values: pd.Series, ascending: bool) -> np.ndarray:
    """1..5 by percentile rank (ties share the average rank); missing -> 0."""
    ranks = values.rank(pct=True, method="average", ascending=ascending)
    q = np.ceil(ranks.fillna(0.0).to_numpy() * 5).clip(1, 5)
    return np.where(values.notna().to_numpy(), q, 0).astype(np.int64)


def rfm_segment(r: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Segment names from recency and frequency scores (1..5; 0 = no order in 365 days).

    Parameters
    ----------
    r, f : ndarray of int

    Returns
    -------
    ndarray of str
        ``none`` (r = 0), ``champions`` (r >= 4, f >= 4), ``loyal`` (r >= 3, f >= 3),
        ``new`` (r >= 4, f = 1), ``promising`` (r >= 4), ``at_risk`` (r <= 2, f >= 3),
        ``hibernating`` (r <= 2), ``needs_attention`` (the rest), first match wins.
    """
    conditions = [
        r == 0,
        (r >= 4) & (f >= 4),
        (r >= 3) & (f >= 3),
        (r >= 4) & (f <= 1),
        r >= 4,
        (r <= 2) & (f >= 3),
        r <= 2,
    ]
    return np.select(conditions, list(RFM_SEGMENTS[:-1]), default=RFM_SEGMENTS[-1]).astype(object)


def add_rfm(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``rfm_r``, ``rfm_f``, ``rfm_m`` and ``rfm_segment`` added.

    Parameters
    ----------
    table : DataFrame
        With ``recency_days``, ``orders_365d``, ``monetary_365d`` (else returned as is).

    Returns
    -------
    DataFrame
    """
    if not set(RFM_INPUTS) <= set(table.columns):
        return table
    buyer = table["orders_365d"].fillna(0) > 0
    out = table.copy()
    out["rfm_r"] = _quintile(table["recency_days"].where(buyer), ascending=False)
    out["rfm_f"] = _quintile(table["orders_365d"].where(buyer), ascending=True)
    out["rfm_m"] = _quintile(table["monetary_365d"].where(buyer), ascending=True)
    out["rfm_segment"] = rfm_segment(out["rfm_r"].to_numpy(), out["rfm_f"].to_numpy())
    return out


__all__ = ["RFM_INPUTS", "RFM_SEGMENTS", "add_rfm", "rfm_segment"]
