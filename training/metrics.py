"""Evaluation metrics for binary scores: ranking, calibration, gain and audience size.

All functions take ``y`` (0/1 labels) and ``p`` (scores; probabilities where the metric
needs them) as 1-D array-likes of equal length. Ties in ``p`` are treated as one block:
a cut through a block of equal scores counts that block's positives pro rata, so results
never depend on the order of tied rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm

_DRAW_BLOCK = 4_000_000


def _check(y: np.ndarray | pd.Series, p: np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if y_arr.shape != p_arr.shape:
        raise ValueError(f"y and p must have the same length, got {y_arr.size} and {p_arr.size}")
    if y_arr.size == 0:
        raise ValueError("y must not be empty")
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("y must contain only 0 and 1")
    if not np.isfinite(p_arr).all():
        raise ValueError("p must be finite")
    return y_arr, p_arr


def _both_classes(y: np.ndarray) -> None:
    if y.min() == y.max():
        raise ValueError("y must contain both classes for a ranking metric")


def roc_auc(y, p) -> float:
    """Area under the ROC curve (probability a random positive outranks a random negative)."""
    y, p = _check(y, p)
    _both_classes(y)
    return float(skm.roc_auc_score(y, p))


def pr_auc(y, p) -> float:
    """Area under the precision-recall curve, as average precision (step-wise, no interpolation)."""
    y, p = _check(y, p)
    _both_classes(y)
    return float(skm.average_precision_score(y, p))


def brier(y, p) -> float:
    """Mean squared error of probabilities ``p`` against outcomes ``y`` (0 is perfect).

    :func:`sklearn.metrics.brier_score_loss`; ``p`` outside [0, 1] raises ``ValueError``.
    """
    y, p = _check(y, p)
    return float(skm.brier_score_loss(y, p, pos_label=1))


def log_loss(y, p) -> float:
    """Mean negative log-likelihood in nats.

    :func:`sklearn.metrics.log_loss` (``p`` clipped to machine epsilon away from 0 and 1);
    ``p`` outside [0, 1] raises ``ValueError``; ``y`` may hold one class only.
    """
    y, p = _check(y, p)
    return float(skm.log_loss(y, p, labels=[0.0, 1.0]))


def _blocks(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative (count, positives) at the end of each block of equal scores, highest first."""
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    ends = np.flatnonzero(np.r_[ps[1:] != ps[:-1], True])
    cum_pos = np.cumsum(ys)[ends]
    return ends + 1.0, cum_pos


def captured_positives(y, p, share: float | np.ndarray) -> np.ndarray:
    """Positives captured by the top ``share`` of rows by score (ties pro rata).

    Parameters
    ----------
    y, p : array-like
        Labels and scores.
    share : float or array of float in [0, 1]
        Fraction of rows targeted, highest scores first.

    Returns
    -------
    numpy.ndarray
        Expected number of positives among the targeted rows, one per ``share``.
    """
    y, p = _check(y, p)
    share = np.atleast_1d(np.asarray(share, dtype=np.float64))
    if ((share < 0) | (share > 1)).any():
        raise ValueError("share must lie in [0, 1]")
    cum_n, cum_pos = _blocks(y, p)
    # piecewise-linear between block ends: exact pro-rata within a tied block
    return np.interp(share * y.size, np.r_[0.0, cum_n], np.r_[0.0, cum_pos])


def gain_curve(y, p, points: int = 101) -> pd.DataFrame:
    """Cumulative gain: share of positives captured against share of audience targeted.

    Returns
    -------
    pandas.DataFrame
        Columns ``audience_share`` (0..1, ``points`` evenly spaced values),
        ``positives_share`` (0..1) and ``lift`` (positives_share / audience_share; NaN at 0).
    """
    y, p = _check(y, p)
    if y.sum() == 0:
        raise ValueError("y must contain at least one positive for a gain curve")
    x = np.linspace(0.0, 1.0, points)
    g = captured_positives(y, p, x) / y.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(x > 0, g / np.where(x > 0, x, 1.0), np.nan)
    return pd.DataFrame({"audience_share": x, "positives_share": g, "lift": lift})


def lift_at(y, p, share: float = 0.1) -> float:
    """Positive rate in the top ``share`` of rows divided by the overall positive rate."""
    y, p = _check(y, p)
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    if y.sum() == 0:
        raise ValueError("y must contain at least one positive for lift")
    captured = captured_positives(y, p, share)[0]
    return float((captured / (share * y.size)) / y.mean())


def audience_share_to_keep(y, p, keep: float = 0.95) -> float:
    """Smallest share of the audience, targeted from the top score down, holding ``keep``
    of all positives.

    Targeting is by threshold: a block of tied scores is taken whole, because no
    threshold can split it.

    Parameters
    ----------
    keep : float in (0, 1]
        Share of positives (conversions) to keep, e.g. 0.95 or 1.0.

    Returns
    -------
    float
        Audience share in (0, 1].
    """
    y, p = _check(y, p)
    if not 0 < keep <= 1:
        raise ValueError(f"keep must lie in (0, 1], got {keep}")
    total = y.sum()
    if total == 0:
        raise ValueError("y must contain at least one positive")
    cum_n, cum_pos = _blocks(y, p)
    need = keep * total - 1e-9
    idx = int(np.argmax(cum_pos >= need))
    return float(cum_n[idx] / y.size)


def calibration_table(y, p, bins: int = 10) -> pd.DataFrame:
    """Mean predicted probability against observed rate per quantile bin of ``p``.

    Rows are split into ``bins`` groups of (nearly) equal size by ascending ``p``
    (stable order; decile for ``bins=10``).

    Returns
    -------
    pandas.DataFrame
        One row per bin: ``bin`` (1 = lowest scores), ``n``, ``mean_predicted``,
        ``observed_rate``, ``relative_error`` (``|mean_predicted - observed| / observed``,
        NaN when observed is 0) and ``std_error`` (binomial s.e. of the observed rate).
    """
    y, p = _check(y, p)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, min(bins, y.size))
    rows = []
    for i, g in enumerate(groups, start=1):
        obs = float(y[g].mean())
        pred = float(p[g].mean())
        rows.append(
            {
                "bin": i,
                "n": int(g.size),
                "mean_predicted": pred,
                "observed_rate": obs,
                "relative_error": abs(pred - obs) / obs if obs > 0 else float("nan"),
                "std_error": float(np.sqrt(max(obs * (1 - obs), 1e-12) / g.size)),
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class CalibrationYardstick:
    """How a decile calibration rule scores a model that is calibrated by construction.

    Attributes
    ----------
    expected_bins_within : float
        Mean number of checked bins whose observed rate is within the tolerance.
    all_bins_pass_probability : float
        Share of draws in which every checked bin is within the tolerance.
    bins_checked : int
        Bins with at least ``min_n`` rows.
    """

    expected_bins_within: float
    all_bins_pass_probability: float
    bins_checked: int


def calibration_yardstick(
    p,
    bins: int = 10,
    tolerance: float = 0.10,
    min_n: int = 200,
    draws: int = 1000,
    seed: int = 0,
) -> CalibrationYardstick:
    """Score the relative-error rule of :func:`calibration_table` on labels drawn from ``p``.

    Labels ``y ~ Bernoulli(p)`` are drawn ``draws`` times per bin (seeded); rows are binned
    like :func:`calibration_table` (by ascending ``p``) and a bin with at least ``min_n``
    rows passes when ``|mean p - observed| <= tolerance * observed`` (fails when nothing
    is observed). Bins hold disjoint rows, so the probability that all pass is the
    product of the bins' pass rates. Because the labels follow ``p`` exactly, this is
    the best any model with these predictions can expect: a yardstick for the real test
    labels. At low rates the rule is mostly noise (a 1% decile of 3,000 rows has a
    standard error of 18% relative).

    Parameters
    ----------
    p : array-like
        Predicted probabilities in [0, 1].
    bins, tolerance, min_n : int, float, int
        The rule: bins of equal size, relative tolerance, smallest bin checked.
    draws : int
        Simulated label sets.
    seed : int
        Seed of the draws.

    Returns
    -------
    CalibrationYardstick
    """
    p_arr = np.asarray(p, dtype=np.float64).ravel()
    if p_arr.size == 0 or not np.isfinite(p_arr).all() or (p_arr < 0).any() or (p_arr > 1).any():
        raise ValueError("p must be a non-empty array of probabilities in [0, 1]")
    if draws < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    rng = np.random.default_rng(seed)
    order = np.argsort(p_arr, kind="stable")
    pass_rates = []
    for group in np.array_split(order, min(bins, p_arr.size)):
        if group.size < min_n:
            continue
        pg = p_arr[group]
        chunk = max(1, _DRAW_BLOCK // pg.size)  # bounded memory: draws x rows in blocks
        observed = np.concatenate(
            [
                (rng.random((min(chunk, draws - start), pg.size)) < pg).mean(axis=1)
                for start in range(0, draws, chunk)
            ]
        )
        ok = (observed > 0) & (np.abs(pg.mean() - observed) <= tolerance * observed)
        pass_rates.append(float(ok.mean()))
    # bins hold disjoint rows, so they pass independently
    return CalibrationYardstick(
        expected_bins_within=float(np.sum(pass_rates)),
        all_bins_pass_probability=float(np.prod(pass_rates)),
        bins_checked=len(pass_rates),
    )


@dataclass(frozen=True)
class BinaryReport:
    """The standard metric set of one scored period (see :func:`binary_report`)."""

    roc_auc: float
    pr_auc: float
    brier: float
    log_loss: float
    lift_at_10pct: float
    audience_share_keep_95pct: float
    audience_share_keep_100pct: float
    positive_rate: float
    n: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """Return ``{f"{prefix}_{name}": value}`` for every field (MLflow metric names)."""
        return {f"{prefix}_{k}": float(v) for k, v in self.__dict__.items()}


def binary_report(y, p) -> BinaryReport:
    """Compute every standard metric of probabilities ``p`` against outcomes ``y``."""
    y, p = _check(y, p)
    return BinaryReport(
        roc_auc=roc_auc(y, p),
        pr_auc=pr_auc(y, p),
        brier=brier(y, p),
        log_loss=log_loss(y, p),
        lift_at_10pct=lift_at(y, p, 0.1),
        audience_share_keep_95pct=audience_share_to_keep(y, p, 0.95),
        audience_share_keep_100pct=audience_share_to_keep(y, p, 1.0),
        positive_rate=float(y.mean()),
        n=int(y.size),
    )
