"""Baselines of the repurchase-timing model, in the same weekly form as the hazard model.

:class:`IntervalBaseline` turns a point forecast — the item's median interval or the
customer's own interval for the item — into a weekly distribution over the horizon, so
both are scored with the same metrics on the same holdout.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from features.definitions import pair_cycle_days
from models.repurchase_distribution import DAYS_PER_WEEK, expected_days
from models.repurchase_hazard import CYCLE_COLS, ELAPSED_COL


class IntervalBaseline(BaseEstimator):
    """Point forecast "last purchase + typical interval", spread into a weekly distribution.

    The forecast days to next purchase are ``d = cycle - days_since_last``; the distribution
    is a normal around ``d`` with standard deviation ``cv * cycle`` (at least
    ``min_sd_days``), truncated to ``(0, inf)`` (the purchase has not happened by T).

    Parameters
    ----------
    kind : {"item_median", "customer_mean"}
        ``item_median``: cycle = the item's median interval (``median_cycle_days``).
        ``customer_mean``: cycle = the customer's own mean interval for the item
        (``own_cycle_days``), falling back to the item's median
        (:func:`features.definitions.pair_cycle_days`).
    weeks : int
        Horizon W.
    min_sd_days : float
        Floor of the spread in days.

    Attributes
    ----------
    cv_ : float
        Spread relative to the cycle, fitted on training pairs that repurchased: the
        median absolute relative error of the point forecast, scaled to a normal sd.
    fallback_cycle_days_ : float
        Median cycle of the training pairs, used when a pair has no cycle at all.
    """

    def __init__(
        self,
        kind: Literal["item_median", "customer_mean"] = "item_median",
        weeks: int = 12,
        *,
        elapsed_col: str = ELAPSED_COL,
        own_col: str = CYCLE_COLS[0],
        item_col: str = CYCLE_COLS[1],
        min_sd_days: float = 3.5,
        max_days: float = 365.0,
    ):
        self.kind = kind
        self.weeks = weeks
        self.elapsed_col = elapsed_col
        self.own_col = own_col
        self.item_col = item_col
        self.min_sd_days = min_sd_days
        self.max_days = max_days

    def _cycle(self, X: pd.DataFrame) -> np.ndarray:
        item = X[self.item_col].to_numpy(dtype=np.float64, na_value=np.nan)
        if self.kind == "customer_mean":
            own = X[self.own_col].to_numpy(dtype=np.float64, na_value=np.nan)
            cyc = pair_cycle_days(own, item)
        elif self.kind == "item_median":
            cyc = item
        else:
            raise ValueError(f"kind must be 'item_median' or 'customer_mean', got {self.kind!r}")
        fallback = getattr(self, "fallback_cycle_days_", np.nan)
        return np.where(np.isfinite(cyc) & (cyc > 0), cyc, fallback)

    def point_days(self, X: pd.DataFrame) -> np.ndarray:
        """Return the point forecast ``cycle - days_since_last`` (days after T, may be <= 0)."""
        return self._cycle(X) - X[self.elapsed_col].to_numpy(dtype=np.float64, na_value=np.nan)

    def fit(
        self, X: pd.DataFrame, event_week: Any = None, days_to_next: Any = None
    ) -> IntervalBaseline:
        """Fit the fallback cycle and the relative spread.

        Parameters
        ----------
        X : DataFrame
            Pair features with the elapsed and cycle columns.
        event_week : ignored
            Accepted for symmetry with :class:`RepurchaseTimingModel`.
        days_to_next : array-like of float, optional
            Observed days from T to the next purchase (NaN when none); used for ``cv_``.
            Without it ``cv_`` is 0.25.
        """
        item = X[self.item_col].to_numpy(dtype=np.float64, na_value=np.nan)
        own = X[self.own_col].to_numpy(dtype=np.float64, na_value=np.nan)
        pool = np.concatenate([item[np.isfinite(item)], own[np.isfinite(own)]])
        self.fallback_cycle_days_ = float(np.median(pool)) if pool.size else 30.0
        self.cv_ = 0.25
        if days_to_next is not None:
            obs = np.asarray(days_to_next, dtype=np.float64)
            cyc = self._cycle(X)
            ok = np.isfinite(obs) & np.isfinite(cyc) & (cyc > 0)
            if ok.sum() >= 20:
                err = (obs[ok] - self.point_days(X)[ok]) / cyc[ok]
                self.cv_ = float(max(1.4826 * np.median(np.abs(err - np.median(err))), 0.05))
        return self

    def predict_distribution(self, X: pd.DataFrame) -> np.ndarray:
        """Return ``p_week_1..p_week_W, p_none`` per pair, shape (n, W + 1)."""
        from scipy.stats import norm

        if not hasattr(self, "cv_"):
            from klantbeeld.errors import NotTrainedError

            raise NotTrainedError("IntervalBaseline is not fitted; call fit()")
        cyc = self._cycle(X)
        d = self.point_days(X)
        d = np.where(np.isfinite(d), d, self.fallback_cycle_days_)
        sd = np.maximum(self.cv_ * np.where(np.isfinite(cyc), cyc, 30.0), self.min_sd_days)
        edges = DAYS_PER_WEEK * np.arange(self.weeks + 1, dtype=np.float64)
        cdf = norm.cdf((edges[None, :] - d[:, None]) / sd[:, None])
        tail = np.clip(1.0 - cdf[:, :1], 1e-12, None)  # P(T > 0)
        p = np.diff(cdf, axis=1) / tail
        p = np.clip(p, 0.0, 1.0)
        p_none = np.clip(1.0 - p.sum(axis=1, keepdims=True), 0.0, 1.0)
        return np.hstack([p, p_none])

    def predict_expected_days(self, X: pd.DataFrame, *, conditional: bool = True) -> np.ndarray:
        """Expected days to next purchase of the truncated-normal distribution."""
        return expected_days(
            self.predict_distribution(X), conditional=conditional, max_days=self.max_days
        )
