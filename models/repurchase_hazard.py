"""The discrete-time hazard table of the repurchase-timing model: one row per pair x week.

For every customer x item pair at cutoff T and every week ``w = 1..W`` the pair is *at
risk* (not yet repurchased since T, still observed). A pair that repurchased in week ``k``
gives rows ``1..k`` (target 1 at ``k``); a pair that did not repurchase during its observed
``c`` weeks gives rows ``1..c``, all 0 — it is *censored* at ``c``, never a "never buys
again" negative. Rows with target 0 can be subsampled (kept rows reweighted by the inverse
rate) to bound the table.

Each row holds the pair's features at T plus the week index and the age of the pair's cycle
at that week (days since the last purchase + days into the horizon, absolute and relative to
each cycle column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from models.repurchase_distribution import DAYS_PER_WEEK

ELAPSED_COL = "days_since_last"
CYCLE_COLS = ("own_cycle_days", "median_cycle_days")
WEEK_FEATURE = "week"
AGE_FEATURE = "age_at_week_days"


def validate_labels(
    n: int, event_week: Any, at_risk_weeks: Any, weeks: int
) -> tuple[np.ndarray, np.ndarray]:
    """Check the labels of ``n`` pairs and return ``(event_week, at_risk_weeks)`` as int arrays.

    Parameters
    ----------
    n : int
        Number of pairs (rows of X).
    event_week : array-like of int, shape (n,)
        Week 1..W of the first purchase after T, 0 when none was observed.
    at_risk_weeks : array-like of int, shape (n,), or None
        Weeks each pair was observed; None means the whole horizon (W).
    weeks : int
        Horizon W.

    Returns
    -------
    (ndarray, ndarray)
        Event weeks and weeks at risk; a pair with an event is at risk up to and including
        its event week.
    """
    ev = np.asarray(event_week, dtype=np.int64).reshape(-1)
    if ev.size != n:
        raise ValueError(f"event_week must have one entry per row of X ({n}), got {ev.size}")
    if ev.min(initial=0) < 0 or ev.max(initial=0) > weeks:
        raise ValueError(f"event_week must be in 0..{weeks} (0 = no purchase observed)")
    if at_risk_weeks is None:
        risk = np.full(n, weeks, dtype=np.int64)
    else:
        risk = np.asarray(at_risk_weeks, dtype=np.int64).reshape(-1)
        if risk.size != n:
            raise ValueError(f"at_risk_weeks must have one entry per row of X ({n})")
        if risk.min(initial=0) < 0 or risk.max(initial=0) > weeks:
            raise ValueError(f"at_risk_weeks must be in 0..{weeks}")
    # A pair with an event is at risk up to (and including) its event week.
    risk = np.where(ev > 0, ev, risk)
    return ev, risk


def hazard_feature_names(names: Sequence[str], cycle_idx: Sequence[int]) -> list[str]:
    """Column names of the hazard table: pair features, week, age, age over each cycle."""
    return (
        list(names)
        + [WEEK_FEATURE, AGE_FEATURE]
        + [f"{AGE_FEATURE}_over_{names[i]}" for i in cycle_idx]
    )


def expand_weeks(
    base: np.ndarray, week_of_row: np.ndarray, elapsed_idx: int, cycle_idx: Sequence[int]
) -> np.ndarray:
    """Append the week index and the pair's age at that week to pair features.

    Parameters
    ----------
    base : ndarray of shape (m, f), float32
        Pair features; column ``elapsed_idx`` holds days since the last purchase.
    week_of_row : ndarray of shape (m,)
        Week 1..W of each row.
    elapsed_idx : int
        Column of ``base`` with the days since the last purchase.
    cycle_idx : sequence of int
        Columns of ``base`` with cycle lengths in days.

    Returns
    -------
    ndarray of shape (m, f + 2 + len(cycle_idx)), float32
        ``base``, week, age at mid-week (days), age / cycle per cycle column (NaN where the
        cycle is not positive).
    """
    elapsed = base[:, elapsed_idx]
    age = elapsed + DAYS_PER_WEEK * week_of_row - DAYS_PER_WEEK / 2.0
    extra = [week_of_row.astype(np.float32), age]
    for idx in cycle_idx:
        cyc = base[:, idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            extra.append(np.where(cyc > 0, age / cyc, np.nan))
    return np.hstack([base, np.column_stack(extra).astype(np.float32)])


def hazard_table(
    base: np.ndarray,
    event_week: np.ndarray,
    at_risk: np.ndarray,
    *,
    weeks: int,
    elapsed_idx: int,
    cycle_idx: Sequence[int],
    rng: np.random.Generator | None,
    max_negative_rows: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build the pair x week hazard table.

    Parameters
    ----------
    base : ndarray of shape (n, f), float32
        Pair features at T.
    event_week, at_risk : ndarray of shape (n,), int
        Output of :func:`validate_labels`.
    weeks : int
        Horizon W.
    elapsed_idx, cycle_idx :
        As for :func:`expand_weeks`.
    rng : numpy Generator or None
        Source of the subsampling of target-0 rows (None keeps all).
    max_negative_rows : int or None
        Cap on target-0 rows; above it they are subsampled uniformly at rate
        ``max_negative_rows / n_negative`` and weighted by its inverse.

    Returns
    -------
    (X, y, weight)
        Hazard rows (see :func:`expand_weeks`), targets 0/1, sample weights.
    """
    n_neg = int(sum(int(((at_risk >= w) & (event_week != w)).sum()) for w in range(1, weeks + 1)))
    rate = 1.0
    if max_negative_rows is not None and n_neg > max_negative_rows:
        rate = max_negative_rows / n_neg
    parts, ys, ws = [], [], []
    for w in range(1, weeks + 1):
        pos = np.flatnonzero(event_week == w)
        neg = np.flatnonzero((at_risk >= w) & (event_week != w))
        if rate < 1.0 and rng is not None:
            neg = neg[rng.random(neg.size) < rate]
        idx = np.concatenate([pos, neg])
        week_of_row = np.full(idx.size, w, dtype=np.float32)
        parts.append(expand_weeks(base[idx], week_of_row, elapsed_idx, cycle_idx))
        ys.append(np.concatenate([np.ones(pos.size), np.zeros(neg.size)]))
        ws.append(np.concatenate([np.ones(pos.size), np.full(neg.size, 1.0 / rate)]))
    return np.vstack(parts), np.concatenate(ys), np.concatenate(ws)
