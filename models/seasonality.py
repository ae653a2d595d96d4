"""Seasonal adjustment of calibrated probabilities: a purchase-intensity shift learned a
year earlier.

A model is calibrated on the validation period, but it is tested (and used) on later
windows. With a long horizon those windows sit in another season: churn (no purchase in 90
days) is calibrated on the window that ends where the test window starts, so a summer
calibration over-predicts churn in the autumn. The shift between two seasons is measured
on the same two seasons one year (``lag_days``, default 364: same weekday) earlier, with
the model itself:

1. score the snapshots at ``valid - lag`` and ``target - lag`` with the calibrated model;
2. at each, find the *log intensity multiplier* ``delta`` that makes the mean adjusted
   probability equal the observed label rate (calibration in the large,
   :func:`fit_log_multiplier`);
3. the shift for ``target`` is ``delta(target - lag) - delta(valid - lag)``.

The adjustment scales a customer's purchase intensity by ``m = exp(delta)``: both labels
are "at least one purchase in (T, T + H]" or its complement, so with intensity ``L`` the
probability of no purchase is ``exp(-L)``, and

- churn (label 1 = no purchase): ``p' = p ** m``;
- conversion (label 1 = a purchase): ``p' = 1 - (1 - p) ** m``.

A seasonal change of intensity moves low probabilities of a purchase-free window more (in
relative terms) than high ones; a logit intercept cannot express that, this does. The map
is increasing, so rankings (ROC-AUC, lift) are unchanged. Two shifts come out of a
training job (:func:`training.scoring_job.fit_evaluate`): one for the test period
(applied to the reported test metrics) and one for the window that starts at the end of
the data (stored in the model, applied to every later prediction).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import numpy as np
from scipy.optimize import brentq

log = logging.getLogger(__name__)

DEFAULT_LAG_DAYS = 364
AUTO_MIN_HORIZON_DAYS = 28
MAX_ABS_LOG_MULTIPLIER = 3.0
MIN_ROWS = 200
_EPS = 1e-12

Mode = Literal["auto", "on", "off"]


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)


def adjust(p: np.ndarray, log_multiplier: float, label_is_purchase: bool) -> np.ndarray:
    """Scale the purchase intensity behind probabilities ``p`` by ``exp(log_multiplier)``.

    Parameters
    ----------
    p : numpy.ndarray
        Probabilities of label 1.
    log_multiplier : float
        ``delta``; 0 leaves ``p`` unchanged (up to clipping to ``[1e-12, 1 - 1e-12]``).
    label_is_purchase : bool
        True when label 1 means "a purchase in the horizon" (conversion), False when it
        means "no purchase" (churn).

    Returns
    -------
    numpy.ndarray
        Adjusted probabilities of label 1 (float64).
    """
    m = float(np.exp(log_multiplier))
    q = _clip(p)
    if label_is_purchase:
        return 1.0 - (1.0 - q) ** m
    return q**m


def fit_log_multiplier(p: np.ndarray, y: np.ndarray, label_is_purchase: bool) -> float:
    """The ``delta`` with ``mean(adjust(p, delta)) == mean(y)`` (calibration in the large).

    Parameters
    ----------
    p : numpy.ndarray
        Calibrated probabilities of label 1.
    y : numpy.ndarray
        0/1 outcomes of the same rows.
    label_is_purchase : bool
        See :func:`adjust`.

    Returns
    -------
    float
        ``delta`` in ``[-3, 3]`` (an intensity ratio between 0.05 and 20); the bound when
        the observed rate cannot be reached inside it.
    """
    p = np.asarray(p, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError("p and y must be non-empty and of equal length")
    rate = float(y.mean())

    def gap(d: float) -> float:
        return float(adjust(p, d, label_is_purchase).mean()) - rate

    lo, hi = -MAX_ABS_LOG_MULTIPLIER, MAX_ABS_LOG_MULTIPLIER
    g_lo, g_hi = gap(lo), gap(hi)
    if g_lo * g_hi > 0:  # the rate is out of reach: take the nearer bound
        return lo if abs(g_lo) < abs(g_hi) else hi
    return float(brentq(gap, lo, hi, xtol=1e-10))


@dataclass(frozen=True)
class IntensityShift:
    """A fitted seasonal adjustment, stored with a model.

    Attributes
    ----------
    log_multiplier : float
        ``delta``: the purchase intensity of the target window relative to the calibration
        window is ``exp(delta)``.
    label_is_purchase : bool
        See :func:`adjust`.
    reference, target : str
        ISO dates of the two earlier cutoffs it was measured on (calibration season and
        target season, one lag before).
    """

    log_multiplier: float
    label_is_purchase: bool
    reference: str = ""
    target: str = ""

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Adjusted probabilities (see :func:`adjust`)."""
        return adjust(p, self.log_multiplier, self.label_is_purchase)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (see :meth:`from_dict`)."""
        return {
            "log_multiplier": self.log_multiplier,
            "label_is_purchase": self.label_is_purchase,
            "reference": self.reference,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IntensityShift:
        """Rebuild from :meth:`to_dict` output."""
        return cls(
            float(d["log_multiplier"]),
            bool(d["label_is_purchase"]),
            str(d.get("reference", "")),
            str(d.get("target", "")),
        )


@dataclass(frozen=True)
class SeasonalPlan:
    """The earlier cutoffs a seasonal adjustment is measured on (naive UTC midnights).

    ``reference`` is the validation cutoff minus the lag; ``test`` the test cutoff minus
    the lag; ``deploy`` the end of the data minus the lag (the window a model trained now
    scores first).
    """

    reference: datetime
    test: datetime
    deploy: datetime
    lag_days: int

    @property
    def cutoffs(self) -> dict[str, datetime]:
        """``{"reference": ..., "test": ..., "deploy": ...}``."""
        return {"reference": self.reference, "test": self.test, "deploy": self.deploy}


def plan_seasonal(
    valid: datetime,
    test: datetime,
    data_end: datetime,
    horizon_days: int,
    data_start: datetime,
    *,
    mode: Mode = "auto",
    lag_days: int = DEFAULT_LAG_DAYS,
    min_history_days: int = 28,
) -> SeasonalPlan | None:
    """The cutoffs of a seasonal adjustment, or None when it does not apply.

    Parameters
    ----------
    valid, test : datetime
        Validation and test cutoffs of the backtest.
    data_end : datetime
        Exclusive end of the data (end of the test label window).
    horizon_days : int
        Label horizon H, days.
    data_start : datetime
        First event.
    mode : {"auto", "on", "off"}
        ``auto`` applies it when ``H >= 28`` days (the calibration window then lies at
        least four weeks from the windows scored); ``on`` whenever the data allows.
    lag_days : int
        How far back the seasons are compared (364: the same weekdays a year earlier).
    min_history_days : int
        The earliest lagged cutoff must be at least this many days after ``data_start``.

    Returns
    -------
    SeasonalPlan or None
        None when switched off, or when the data starts too late for ``valid - lag``.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"seasonal adjustment mode must be auto, on or off, got {mode!r}")
    if mode == "off" or (mode == "auto" and horizon_days < AUTO_MIN_HORIZON_DAYS):
        return None
    if lag_days < horizon_days:
        raise ValueError(f"lag_days ({lag_days}) must be at least the horizon ({horizon_days})")
    lag = timedelta(days=lag_days)
    plan = SeasonalPlan(valid - lag, test - lag, data_end - lag, lag_days)
    if plan.reference < data_start + timedelta(days=min_history_days):
        log.info(
            "no seasonal adjustment: data from %s is too short for a cutoff %d days before %s",
            data_start.date(),
            lag_days,
            valid.date(),
        )
        return None
    return plan


def seasonal_shift(
    p_reference: np.ndarray,
    y_reference: np.ndarray,
    p_target: np.ndarray,
    y_target: np.ndarray,
    label_is_purchase: bool,
    reference: str = "",
    target: str = "",
) -> IntensityShift | None:
    """Shift from the calibration season to the target season, from one lag earlier.

    Parameters
    ----------
    p_reference, y_reference : numpy.ndarray
        The calibrated model's probabilities and the outcomes at ``valid - lag``.
    p_target, y_target : numpy.ndarray
        The same at ``target - lag``.
    label_is_purchase : bool
        See :func:`adjust`.
    reference, target : str
        Dates recorded on the result.

    Returns
    -------
    IntensityShift or None
        None (with a warning) when either side has fewer than 200 rows or one class only.
    """
    for name, y in (("reference", y_reference), ("target", y_target)):
        y = np.asarray(y)
        if y.size < MIN_ROWS or np.unique(y).size < 2:
            log.warning(
                "no seasonal adjustment: the %s cutoff has %d labelled rows (need %d, both "
                "classes)",
                name,
                y.size,
                MIN_ROWS,
            )
            return None
    d_ref = fit_log_multiplier(p_reference, y_reference, label_is_purchase)
    d_tgt = fit_log_multiplier(p_target, y_target, label_is_purchase)
    return IntensityShift(d_tgt - d_ref, label_is_purchase, reference, target)
