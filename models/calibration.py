"""Probability calibration of raw model scores, fitted on the validation period.

Two maps from a raw score (LightGBM margin, any real number) to a probability:

- ``sigmoid`` (Platt scaling): ``p = 1 / (1 + exp(-(a * s + b)))``;
- ``isotonic``: a monotone step function, *centred* (the value of each block sits at the
  block's mean score and the map interpolates linearly between blocks), so the map is
  strictly increasing inside the fitted range and calibration keeps the model's ranking.

:func:`choose_calibrator` picks one by the Brier score it reaches on the validation period,
cross-fitted (K folds) so the more flexible isotonic map gets no advantage from fitting and
scoring the same rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

log = logging.getLogger(__name__)

Method = Literal["isotonic", "sigmoid"]
METHODS: tuple[Method, ...] = ("isotonic", "sigmoid")


class Calibrator:
    """Monotone map from raw scores to probabilities.

    Parameters
    ----------
    method : {"isotonic", "sigmoid"}
        Isotonic (centred, see module docstring) or Platt scaling.

    Attributes
    ----------
    x_, y_ : numpy.ndarray
        Isotonic knots (raw score, probability), increasing.
    a_, b_ : float
        Platt slope and intercept.
    """

    def __init__(self, method: Method = "isotonic") -> None:
        self.method = method

    def fit(self, scores: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on raw ``scores`` and 0/1 outcomes ``y``; returns self."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        t = np.asarray(y, dtype=np.float64).ravel()
        if s.shape != t.shape or s.size == 0:
            raise ValueError("scores and y must be non-empty and of equal length")
        if self.method == "sigmoid":
            lr = LogisticRegression(C=1e6, solver="lbfgs", max_iter=1000)
            lr.fit(s.reshape(-1, 1), t)
            self.a_, self.b_ = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        elif self.method == "isotonic":
            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
            fitted = iso.fit(s, t).predict(s)
            order = np.argsort(s, kind="stable")
            s_sorted, f_sorted = s[order], fitted[order]
            # blocks of equal fitted value -> one knot at the block's mean score
            starts = np.flatnonzero(np.r_[True, f_sorted[1:] != f_sorted[:-1]])
            sums = np.add.reduceat(s_sorted, starts)
            counts = np.diff(np.r_[starts, s_sorted.size])
            self.x_ = sums / counts
            self.y_ = f_sorted[starts]
            # keep probabilities off exact 0 and 1 (log-loss) by half an observation
            n = s.size
            self.y_ = np.clip(self.y_, 0.5 / n, 1 - 0.5 / n)
        else:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        return self

    def predict(self, scores: np.ndarray) -> np.ndarray:
        """Return calibrated probabilities for raw ``scores`` (float64, in (0, 1))."""
        s = np.asarray(scores, dtype=np.float64).ravel()
        if self.method == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(self.a_ * s + self.b_)))
        if self.x_.size == 1:
            return np.full(s.shape, float(self.y_[0]))
        return np.interp(s, self.x_, self.y_)

    def to_dict(self) -> dict:
        """Parameters as plain JSON-able data (see :meth:`from_dict`)."""
        if self.method == "sigmoid":
            return {"method": "sigmoid", "a": self.a_, "b": self.b_}
        return {"method": "isotonic", "x": self.x_.tolist(), "y": self.y_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Calibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict` output."""
        cal = cls(d["method"])
        if cal.method == "sigmoid":
            cal.a_, cal.b_ = float(d["a"]), float(d["b"])
        else:
            cal.x_ = np.asarray(d["x"], dtype=np.float64)
            cal.y_ = np.asarray(d["y"], dtype=np.float64)
        return cal


@dataclass(frozen=True)
class CalibrationChoice:
    """The chosen calibrator and the cross-fitted validation Brier score of each method."""

    calibrator: Calibrator
    brier: dict[str, float]

    @property
    def method(self) -> str:
        """Name of the chosen method."""
        return self.calibrator.method


def choose_calibrator(
    scores: np.ndarray, y: np.ndarray, *, folds: int = 5, random_state: int = 0
) -> CalibrationChoice:
    """Pick isotonic or sigmoid by cross-fitted Brier score, then refit it on all rows.

    Parameters
    ----------
    scores : numpy.ndarray
        Raw scores on the validation period.
    y : numpy.ndarray
        0/1 outcomes on the validation period.
    folds : int
        Stratified folds for cross-fitting.
    random_state : int
        Seed of the fold assignment.

    Returns
    -------
    CalibrationChoice
        Ties go to ``sigmoid`` (fewer parameters).
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.int64).ravel()
    if np.bincount(t, minlength=2).min() < folds:
        raise ValueError(f"y needs at least {folds} rows of each class to choose a calibrator")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=random_state)
    result: dict[str, float] = {}
    for method in METHODS:
        oof = np.empty_like(s)
        for fit_idx, eval_idx in skf.split(s, t):
            oof[eval_idx] = Calibrator(method).fit(s[fit_idx], t[fit_idx]).predict(s[eval_idx])
        result[method] = float(np.mean((oof - t) ** 2))
    best = min(METHODS, key=lambda k: (result[k], k != "sigmoid"))
    log.info("calibration brier %s -> %s", result, best)
    return CalibrationChoice(Calibrator(best).fit(s, t), result)
