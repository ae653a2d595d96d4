"""The backtest's gain curve by score threshold: what each threshold would have targeted.

:func:`threshold_curve` turns the test period's labels and calibrated scores into one row
per candidate threshold: the audience it selects (``score >= threshold``, a block of tied
scores taken whole, because no threshold can split it), the share of the period's actual
conversions inside it, and the share of the *expected* conversions (sum of calibrated
probabilities). With the demo shop's oracle it also holds the conversions share the true
propensities would capture with an audience of the same size. The training job logs it as
``evaluation/threshold_curve.csv``; the threshold chooser
(:mod:`serving.targeting.threshold`) reads it back.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from training.metrics import captured_positives

#: Columns of :func:`threshold_curve` (``oracle_conversions_share`` only with an oracle).
COLUMNS = (
    "threshold",
    "audience_size",
    "audience_share",
    "conversions_share",
    "expected_conversions_share",
)


def threshold_curve(
    y: np.ndarray, p: np.ndarray, oracle: np.ndarray | None = None, points: int = 1001
) -> pd.DataFrame:
    """Audience, conversions and expected conversions kept, per score threshold.

    Parameters
    ----------
    y : ndarray of {0, 1}, shape (n,)
        Test-period labels (converted in the horizon or not).
    p : ndarray of float, shape (n,)
        Calibrated probabilities for the same rows.
    oracle : ndarray of float, shape (n,), optional
        True propensities of the same rows (demo shop), for the oracle column.
    points : int
        Candidate audience sizes, evenly spaced over (0, n]; thresholds that select the
        same audience (ties) are kept once.

    Returns
    -------
    pandas.DataFrame
        One row per distinct threshold, from the highest (smallest audience) down:
        ``threshold`` (probability; the audience is ``score >= threshold``),
        ``audience_size`` (rows), ``audience_share`` (of n), ``conversions_share`` (of all
        actual conversions), ``expected_conversions_share`` (of ``sum(p)``) and, with
        ``oracle``, ``oracle_conversions_share`` (an oracle audience of the same size).

    Raises
    ------
    ValueError
        Mismatched lengths, no rows, no conversions or ``points < 2``.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1 or y.size == 0:
        raise ValueError(
            f"y and p must be non-empty 1-d arrays of one length, got {y.shape}, {p.shape}"
        )
    if oracle is not None and np.shape(oracle) != y.shape:
        raise ValueError(f"oracle must have shape {y.shape}, got {np.shape(oracle)}")
    if y.sum() <= 0:
        raise ValueError("y holds no conversions: no gain curve")
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    n = y.size
    order = np.argsort(-p, kind="stable")
    s = p[order]
    cum_y = np.cumsum(y[order])
    cum_p = np.cumsum(s)
    ks = np.unique(np.ceil(np.linspace(1.0 / points, 1.0, points) * n).astype(np.int64))
    thresholds = s[ks - 1]
    # everything tied with the k-th score is selected too: size = count(p >= threshold)
    sizes = np.searchsorted(-s, -thresholds, side="right")
    thresholds, first = np.unique(thresholds[::-1], return_index=True)
    sizes = sizes[::-1][first]
    thresholds, sizes = thresholds[::-1], sizes[::-1]
    out = pd.DataFrame(
        {
            "threshold": thresholds,
            "audience_size": sizes,
            "audience_share": sizes / n,
            "conversions_share": cum_y[sizes - 1] / cum_y[-1],
            "expected_conversions_share": cum_p[sizes - 1] / cum_p[-1] if cum_p[-1] > 0 else 0.0,
        }
    )
    if oracle is not None:
        out["oracle_conversions_share"] = (
            captured_positives(y, np.asarray(oracle, dtype=np.float64), sizes / n) / cum_y[-1]
        )
    return out


__all__ = ["COLUMNS", "threshold_curve"]
