"""Weekly distribution of the time to next purchase: hazards, cumulative, quantiles.

Pure numpy, tested on hand-worked numbers. A distribution over a horizon of W weeks is an
array of shape ``(n, W + 1)``: ``p_week_1..p_week_W`` then ``p_none`` (no purchase within
the horizon); each row sums to 1. Days are measured from the cutoff T; week ``w`` covers
days ``(7(w-1), 7w]``; within a week the cumulative probability is linear in days.

Hazards ``h_w = P(purchase in week w | none in weeks 1..w-1)`` turn into the distribution
by ``p_w = h_w * prod_{j<w}(1 - h_j)`` and ``p_none = prod_{j<=W}(1 - h_j)``. The expected
next purchase (:func:`expected_days`) is the median of the distribution given a purchase
within the horizon; the plain median (:func:`median_days`) extrapolates beyond the horizon
with week W's hazard, capped at ``max_days``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

DAYS_PER_WEEK = 7


def week_columns(weeks: int) -> list[str]:
    """Return the column names ``p_week_1..p_week_<weeks>``."""
    return [f"p_week_{w}" for w in range(1, weeks + 1)]


def hazards_to_distribution(hazards: np.ndarray) -> np.ndarray:
    """Turn weekly hazards into the distribution of the week of next purchase.

    Parameters
    ----------
    hazards : ndarray of shape (n, W)
        ``h[i, w-1] = P(purchase in week w | none in weeks 1..w-1)``, probabilities.

    Returns
    -------
    ndarray of shape (n, W + 1)
        Columns ``p_week_1..p_week_W`` then ``p_none`` (no purchase within W weeks);
        each row sums to 1.
    """
    h = np.clip(np.asarray(hazards, dtype=np.float64), 0.0, 1.0)
    if h.ndim != 2:
        raise ValueError(f"hazards must be 2-D (pairs x weeks), got shape {h.shape}")
    survival_before = np.cumprod(np.hstack([np.ones((h.shape[0], 1)), 1.0 - h]), axis=1)
    p_weeks = h * survival_before[:, :-1]
    return np.hstack([p_weeks, survival_before[:, -1:]])


def distribution_to_hazards(dist: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hazards_to_distribution` (hazard 1 where nothing survives)."""
    d = np.asarray(dist, dtype=np.float64)
    p = d[:, :-1]
    survival_before = 1.0 - np.hstack([np.zeros((d.shape[0], 1)), np.cumsum(p, axis=1)[:, :-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(survival_before > 1e-12, p / survival_before, 1.0)
    return np.clip(h, 0.0, 1.0)


def cumulative_at_days(dist: np.ndarray, days: np.ndarray | float) -> np.ndarray:
    """Return ``P(next purchase within `days` of T)`` for each row.

    Linear within a week; ``days`` beyond the horizon give the horizon's cumulative
    probability (nothing is assumed about the tail here).

    Parameters
    ----------
    dist : ndarray of shape (n, W + 1)
        Output of :func:`hazards_to_distribution`.
    days : float or ndarray of shape (n,)
        Days after T (0 gives 0).

    Returns
    -------
    ndarray of shape (n,)
        Probabilities.
    """
    d = np.asarray(dist, dtype=np.float64)
    n, width = d.shape
    weeks = width - 1
    cdf = np.hstack([np.zeros((n, 1)), np.cumsum(d[:, :weeks], axis=1)])  # at 0, 7, ..., 7W
    t = np.clip(np.broadcast_to(np.asarray(days, dtype=np.float64), (n,)), 0.0, 7.0 * weeks)
    k = np.minimum((t // DAYS_PER_WEEK).astype(np.int64), weeks - 1)
    frac = (t - DAYS_PER_WEEK * k) / DAYS_PER_WEEK
    rows = np.arange(n)
    return cdf[rows, k] + frac * (cdf[rows, k + 1] - cdf[rows, k])


def window_probability(dist: np.ndarray, start_days: Any, end_days: Any) -> np.ndarray:
    """Return ``P(next purchase in (start_days, end_days])`` for each row (days after T)."""
    return cumulative_at_days(dist, end_days) - cumulative_at_days(dist, start_days)


def median_days(
    dist: np.ndarray,
    *,
    quantile: float = 0.5,
    conditional: bool = False,
    max_days: float = 365.0,
) -> np.ndarray:
    """Return the median (or another quantile) of the time to next purchase, in days after T.

    Parameters
    ----------
    dist : ndarray of shape (n, W + 1)
        Weekly distribution with ``p_none`` last.
    quantile : float
        Which quantile; 0.5 is the median.
    conditional : bool
        If True, the quantile of the distribution *given* a purchase within the horizon
        (``p_week`` renormalised by ``1 - p_none``); rows with no mass give ``max_days``.
    max_days : float
        Cap of the result. When the quantile lies beyond the horizon it is extrapolated
        with week W's hazard held constant, then capped.

    Returns
    -------
    ndarray of shape (n,)
        Days after T (float, linear interpolation within a week).
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    d = np.asarray(dist, dtype=np.float64)
    n, width = d.shape
    weeks = width - 1
    p = d[:, :weeks]
    if conditional:
        mass = p.sum(axis=1, keepdims=True)
        p = np.divide(p, mass, out=np.zeros_like(p), where=mass > 1e-12)
    cdf = np.cumsum(p, axis=1)
    out = np.full(n, float(max_days))
    inside = cdf[:, -1] >= quantile - 1e-12
    if inside.any():
        ci = cdf[inside]
        pi = p[inside]
        k = np.argmax(ci >= quantile - 1e-12, axis=1)  # 0-based week holding the quantile
        rows = np.arange(ci.shape[0])
        before = np.where(k > 0, ci[rows, np.maximum(k - 1, 0)], 0.0)
        pk = pi[rows, k]
        frac = np.divide(quantile - before, pk, out=np.ones_like(pk), where=pk > 1e-12)
        out[inside] = DAYS_PER_WEEK * (k + np.clip(frac, 0.0, 1.0))
    beyond = ~inside
    if beyond.any() and not conditional:
        s_w = 1.0 - cdf[beyond, -1]
        s_prev = s_w + p[beyond, -1]
        with np.errstate(divide="ignore", invalid="ignore"):
            h_tail = np.where(s_prev > 1e-12, p[beyond, -1] / s_prev, 0.0)
            extra_weeks = np.log((1.0 - quantile) / s_w) / np.log1p(-np.clip(h_tail, 0, 1 - 1e-9))
        extra_weeks = np.where(h_tail > 1e-9, extra_weeks, np.inf)
        out[beyond] = DAYS_PER_WEEK * weeks + DAYS_PER_WEEK * extra_weeks
    return np.minimum(out, max_days)


def restricted_mean_days(dist: np.ndarray) -> np.ndarray:
    """Return the restricted mean time to next purchase within the horizon, in days.

    ``integral_0^{7W} S(t) dt`` with ``S`` linear within a week: a pair that surely buys
    in week 1 gets about 3.5, one that surely does not buy gets ``7W``. Used to rank pairs
    by predicted time to repurchase (concordance index).
    """
    d = np.asarray(dist, dtype=np.float64)
    weeks = d.shape[1] - 1
    s = 1.0 - np.hstack([np.zeros((d.shape[0], 1)), np.cumsum(d[:, :weeks], axis=1)])
    return DAYS_PER_WEEK * 0.5 * (s[:, :-1] + s[:, 1:]).sum(axis=1)


def combine_first_purchase(dist: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distribution of the first purchase among several pairs of one customer.

    Assumes the pairs of a customer are independent given their features: the survival of
    "no purchase of any pair yet" is the product of the pairs' survivals.

    Parameters
    ----------
    dist : ndarray of shape (n, W + 1)
        Per-pair weekly distributions.
    groups : ndarray of shape (n,)
        Group key (customer id) of each row.

    Returns
    -------
    keys : ndarray of shape (g,)
        Sorted unique group keys.
    combined : ndarray of shape (g, W + 1)
        Weekly distribution of each group's first purchase of anything among its pairs.
    """
    d = np.asarray(dist, dtype=np.float64)
    weeks = d.shape[1] - 1
    survival = 1.0 - np.cumsum(d[:, :weeks], axis=1)  # S(7w), w = 1..W
    log_s = np.log(np.clip(survival, 1e-300, 1.0))
    keys, inverse = np.unique(np.asarray(groups), return_inverse=True)
    summed = np.zeros((keys.size, weeks))
    np.add.at(summed, inverse, log_s)
    s = np.exp(summed)
    s_before = np.hstack([np.ones((keys.size, 1)), s[:, :-1]])
    p_weeks = np.clip(s_before - s, 0.0, 1.0)
    return keys, np.hstack([p_weeks, s[:, -1:]])


def expected_days(
    dist: np.ndarray, *, conditional: bool = True, max_days: float = 365.0
) -> np.ndarray:
    """The expected next purchase, in days after T: a median of the weekly distribution.

    By default the median *given a purchase within the horizon* (the date to time a
    reminder for; read it together with ``1 - p_none``). With ``conditional=False`` the
    plain median, extrapolated beyond the horizon (see :func:`median_days`).
    """
    return median_days(dist, conditional=conditional, max_days=max_days)


def distribution_frame(
    dist: np.ndarray,
    X: pd.DataFrame | None = None,
    *,
    as_of: Any = None,
    keys: Sequence[str] = (),
    max_days: float = 365.0,
) -> pd.DataFrame:
    """Tabulate weekly distributions with their expected (median) days and date.

    Parameters
    ----------
    dist : ndarray of shape (n, W + 1)
    X : DataFrame, optional
        Source of the ``keys`` columns (same row order as ``dist``).
    as_of : datetime-like, optional
        Cutoff T for ``expected_date``.
    keys : sequence of str
        Columns of X copied in front.
    max_days : float
        Cap of ``expected_days``.

    Returns
    -------
    DataFrame
        ``keys``, ``p_week_1..p_week_W``, ``p_none``, ``p_within_horizon``,
        ``expected_days`` (see :func:`expected_days`), and ``expected_date`` (when ``as_of``
        is given).
    """
    weeks = dist.shape[1] - 1
    out = pd.DataFrame(dist, columns=[*week_columns(weeks), "p_none"])
    if X is not None and keys:
        for i, k in enumerate(keys):
            out.insert(i, k, X[k].to_numpy())
    out["p_within_horizon"] = 1.0 - out["p_none"]
    out["expected_days"] = expected_days(dist, max_days=max_days)
    if as_of is not None:
        t0 = pd.Timestamp(as_of).normalize()
        out["expected_date"] = (t0 + pd.to_timedelta(out["expected_days"], unit="D")).dt.normalize()
    return out
