"""Simple baselines measured beside every binary model on the same test period.

- :class:`RFMBaseline`: the classic recency/frequency/monetary heuristic. Each of R
  (days since last order, fewer is better), F (orders) and M (spend, EUR) is scored 1–5 by
  training quintiles; the RFM total (3–15) maps to the outcome rate observed for that total
  on the training rows.
- :class:`LogisticBaseline`: logistic regression on a handful of features (log1p of
  counts, days and money, standardised, missing values flagged).

Both follow :class:`models.base.Scorer`; the validation rows are not needed and unused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from klantbeeld.atomic import atomic_directory
from models.base import TOP_DOWN, TOP_UP, Scorer, check_xy, top_k_names

RECENCY = "recency_days"
FREQUENCY = "orders_total"
MONETARY = "monetary_total"
LOGREG_FEATURES = (
    "recency_days",
    "orders_total",
    "monetary_total",
    "orders_90d",
    "sessions_30d",
    "tenure_days",
)
META_FILE = "baseline.json"


def _save_json(path: Path, meta: dict[str, Any]) -> None:
    with atomic_directory(path) as tmp:
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))


def _column(X: pd.DataFrame, name: str) -> np.ndarray:
    if name not in X.columns:
        return np.full(len(X), np.nan)
    return pd.to_numeric(X[name], errors="coerce").to_numpy(dtype=np.float64)


class RFMBaseline(Scorer):
    """RFM quintile heuristic (see module docstring).

    Parameters
    ----------
    prior_weight : float
        Pseudo-count pulling each RFM total's rate toward the overall training rate.

    Attributes
    ----------
    edges_ : dict[str, list[float]]
        Four inner quintile edges per component (training rows).
    rates_ : list[float]
        Outcome rate per RFM total 3..15 (index 0 = total 3).
    """

    def __init__(self, prior_weight: float = 20.0) -> None:
        self.prior_weight = prior_weight

    def _scores(self, X: pd.DataFrame) -> np.ndarray:
        """``(n, 3)`` component scores 1..5 (R, F, M); missing counts as worst (1)."""
        out = np.empty((len(X), 3), dtype=np.float64)
        for j, name in enumerate((RECENCY, FREQUENCY, MONETARY)):
            v = _column(X, name)
            s = np.searchsorted(np.asarray(self.edges_[name]), v, side="right") + 1.0
            if name == RECENCY:
                s = 6.0 - s  # recent is good
            out[:, j] = np.where(np.isnan(v), 1.0, s)
        return out

    def fit(self, X, y, X_valid=None, y_valid=None) -> Self:
        """Learn quintile edges and the rate per RFM total from ``(X, y)``; return self."""
        y_arr = check_xy(X, y, "X")
        self.edges_ = {}
        for name in (RECENCY, FREQUENCY, MONETARY):
            v = _column(X, name)
            v = v[~np.isnan(v)]
            qs = np.quantile(v, [0.2, 0.4, 0.6, 0.8]) if v.size else np.zeros(4)
            self.edges_[name] = [float(q) for q in qs]
        total = self._scores(X).sum(axis=1).astype(int)
        prior = float(y_arr.mean())
        n = np.bincount(total - 3, minlength=13)[:13]
        pos = np.bincount(total - 3, weights=y_arr, minlength=13)[:13]
        self.rates_ = ((pos + self.prior_weight * prior) / (n + self.prior_weight)).tolist()
        self.direction_ = 1.0 if self.rates_[-1] >= self.rates_[0] else -1.0
        self.feature_names_ = [RECENCY, FREQUENCY, MONETARY]
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Training outcome rate of each row's RFM total (probability)."""
        self._check_fitted()
        total = self._scores(X).sum(axis=1).astype(int)
        return np.asarray(self.rates_, dtype=np.float64)[total - 3]

    def explain(self, X: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Components above (up) or below (down) the middle quintile, in the score's direction."""
        self._check_fitted()
        contrib = (self._scores(X) - 3.0) * self.direction_
        ups, downs = top_k_names(contrib, self.feature_names_, k)
        return pd.DataFrame({TOP_UP: ups, TOP_DOWN: downs}, index=X.index)

    def save(self, path: Path) -> None:
        """Write the edges and rates as JSON to directory ``path``."""
        self._check_fitted()
        _save_json(
            path,
            {
                "prior_weight": self.prior_weight,
                "edges": self.edges_,
                "rates": self.rates_,
                "direction": self.direction_,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(path) / META_FILE).read_text())
        obj = cls(prior_weight=meta["prior_weight"])
        obj.edges_ = {k: list(v) for k, v in meta["edges"].items()}
        obj.rates_ = list(meta["rates"])
        obj.direction_ = float(meta["direction"])
        obj.feature_names_ = [RECENCY, FREQUENCY, MONETARY]
        return obj


class LogisticBaseline(Scorer):
    """Logistic regression on a handful of features (see module docstring).

    Parameters
    ----------
    features : tuple of str
        Candidate features; those present in the training frame are used.
    C : float
        Inverse L2 regularisation strength.

    Attributes
    ----------
    feature_names_ : list[str]
        Features used, in order.
    medians_, means_, scales_ : list[float]
        Imputation and standardisation of the transformed design columns.
    coef_ : list[float]
        Coefficients of the design columns (features then missing flags).
    intercept_ : float
    """

    def __init__(self, features: tuple[str, ...] = LOGREG_FEATURES, C: float = 1.0) -> None:
        self.features = features
        self.C = C

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        cols, flags = [], []
        for i, name in enumerate(self.feature_names_):
            v = _column(X, name)
            miss = np.isnan(v)
            v = np.log1p(np.clip(np.where(miss, self.medians_[i], v), 0.0, None))
            cols.append(v)
            flags.append(miss.astype(np.float64))
        d = np.column_stack(cols + flags)
        return (d - np.asarray(self.means_)) / np.asarray(self.scales_)

    def fit(self, X, y, X_valid=None, y_valid=None) -> Self:
        """Fit the regression on ``(X, y)``; return self."""
        from sklearn.linear_model import LogisticRegression

        y_arr = check_xy(X, y, "X")
        self.feature_names_ = [f for f in self.features if f in X.columns]
        if not self.feature_names_:
            raise ValueError(f"X must contain at least one of the features {self.features}")
        self.medians_ = [
            float(np.nan_to_num(np.nanmedian(_column(X, f)))) for f in self.feature_names_
        ]
        self.means_ = [0.0] * (2 * len(self.feature_names_))
        self.scales_ = [1.0] * (2 * len(self.feature_names_))
        raw = self._design(X)
        self.means_ = raw.mean(axis=0).tolist()
        self.scales_ = np.where(raw.std(axis=0) > 0, raw.std(axis=0), 1.0).tolist()
        lr = LogisticRegression(C=self.C, max_iter=2000)
        lr.fit(self._design(X), y_arr)
        self.coef_ = lr.coef_[0].tolist()
        self.intercept_ = float(lr.intercept_[0])
        return self

    def _contrib(self, X: pd.DataFrame) -> np.ndarray:
        return self._design(X) * np.asarray(self.coef_)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probability of label 1 per row."""
        self._check_fitted()
        z = self._contrib(X).sum(axis=1) + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))

    def explain(self, X: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Features (value and missing flag summed) with the largest logit contributions."""
        self._check_fitted()
        c = self._contrib(X)
        m = len(self.feature_names_)
        ups, downs = top_k_names(c[:, :m] + c[:, m:], self.feature_names_, k)
        return pd.DataFrame({TOP_UP: ups, TOP_DOWN: downs}, index=X.index)

    def save(self, path: Path) -> None:
        """Write the coefficients as JSON to directory ``path``."""
        self._check_fitted()
        _save_json(
            path,
            {
                "features": list(self.features),
                "C": self.C,
                "feature_names": self.feature_names_,
                "medians": self.medians_,
                "means": self.means_,
                "scales": self.scales_,
                "coef": self.coef_,
                "intercept": self.intercept_,
            },
        )

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        meta = json.loads((Path(path) / META_FILE).read_text())
        obj = cls(features=tuple(meta["features"]), C=meta["C"])
        for key in ("feature_names", "medians", "means", "scales", "coef"):
            setattr(obj, f"{key}_", list(meta[key]))
        obj.intercept_ = float(meta["intercept"])
        return obj
