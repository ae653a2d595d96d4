"""Expected purchases and customer lifetime value (CLV) over a horizon of H days.

Two models share one object:

- :class:`CLVModel` — LightGBM on point-in-time customer features: a Poisson count model
  of the orders in ``[T, T + H)`` and a Gamma-regression spend model of their mean value
  (EUR per order, fitted on the customers who ordered, weighted by their order count).
  ``clv = expected_purchases * expected_spend`` (EUR, undiscounted revenue in the horizon).
- :class:`BGNBDGammaGamma` — the classic baseline: BG/NBD (:mod:`models.bgnbd`) for the
  count and Gamma-Gamma (:mod:`models.gamma_gamma`) for the spend, fitted on the same
  snapshot's order history alone (no labels), in days and EUR.

Population: customers with at least one order before T (``orders_total >= 1``); both
models return NaN for everyone else (BG/NBD starts at a first purchase; so does the CLV
a CDP shows). Time is in days, money in EUR.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from klantbeeld.atomic import atomic_directory
from klantbeeld.errors import KlantbeeldError, NotTrainedError
from models import bgnbd, gamma_gamma
from models.lgbm import DEFAULT_PARAMS, _frame, numeric_features, seeded_params

log = logging.getLogger(__name__)

ORDERS = "orders_total"
MONETARY = "monetary_total"
RECENCY = "recency_days"
FIRST_ORDER = "first_order_days"
EXPECTED_PURCHASES = "expected_purchases"
EXPECTED_SPEND = "expected_spend"
CLV = "clv"
OUTPUT_COLUMNS = (EXPECTED_PURCHASES, EXPECTED_SPEND, CLV)
META_FILE = "clv.json"
COUNT_FILE = "count_booster.txt"
SPEND_FILE = "spend_booster.txt"


def in_population(X: pd.DataFrame) -> np.ndarray:
    """Boolean mask of the rows with at least one order before T (``orders_total >= 1``)."""
    if ORDERS not in X.columns:
        raise KlantbeeldError(f"CLV inputs need column {ORDERS!r} (customer snapshot, rfm group)")
    return np.asarray(pd.to_numeric(X[ORDERS], errors="coerce").fillna(0).to_numpy() >= 1)


def _output(n: int, mask: np.ndarray, purchases: np.ndarray, spend: np.ndarray) -> pd.DataFrame:
    out = np.full((n, 3), np.nan)
    out[mask, 0] = purchases
    out[mask, 1] = spend
    out[mask, 2] = purchases * spend
    return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))


class CLVModel:
    """LightGBM count (Poisson) and spend (Gamma) models of the next ``horizon_days``.

    Parameters
    ----------
    horizon_days : int
        H, the length of the predicted period in days (a label is the orders in
        ``[T, T + H)``).
    params : dict, optional
        LightGBM parameters overriding the defaults of both models (objective excepted).
    n_estimators : int
        Most boosting rounds per model; early stopping on the validation rows picks fewer.
    early_stopping_rounds : int
        Rounds without improvement of the validation loss before stopping.
    random_state : int
        Seed of bagging and feature sampling.
    num_threads : int
        LightGBM threads.
    refit : bool
        Refit each model with its early-stopped number of trees on training + validation
        rows (the most recent labelled period).

    Attributes
    ----------
    feature_names_ : list of str
        Numeric input columns, pinned at fit.
    count_booster_, spend_booster_ : lightgbm.Booster
    best_iterations_ : dict of str to int
        Trees of the ``count`` and ``spend`` models.
    """

    def __init__(
        self,
        horizon_days: int = 90,
        params: dict[str, Any] | None = None,
        n_estimators: int = 1000,
        early_stopping_rounds: int = 50,
        random_state: int = 42,
        num_threads: int = 2,
        refit: bool = True,
    ) -> None:
        self.horizon_days = horizon_days
        self.params = params
        self.n_estimators = n_estimators
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.num_threads = num_threads
        self.refit = refit

    def lgb_params(self, objective: str) -> dict[str, Any]:
        """Full, seeded LightGBM parameters of the ``poisson`` or ``gamma`` model."""
        base = {**DEFAULT_PARAMS, **(self.params or {}), "objective": objective}
        return seeded_params(base, self.random_state, self.num_threads)

    def _train(
        self,
        objective: str,
        X: pd.DataFrame,
        y: np.ndarray,
        w: np.ndarray | None,
        Xv: pd.DataFrame,
        yv: np.ndarray,
        wv: np.ndarray | None,
    ) -> tuple[Any, int]:
        import lightgbm as lgb

        params = self.lgb_params(objective)
        train = lgb.Dataset(X, label=y, weight=w)
        valid = lgb.Dataset(Xv, label=yv, weight=wv, reference=train)
        booster = lgb.train(
            params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=[valid],
            valid_names=["valid"],
            callbacks=[lgb.early_stopping(self.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration or booster.current_iteration())
        if not self.refit:
            return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best
        both = lgb.Dataset(
            pd.concat([X, Xv], ignore_index=True),
            label=np.r_[y, yv],
            weight=None if w is None or wv is None else np.r_[w, wv],
        )
        return lgb.train(params, both, num_boost_round=best), best

    def fit(
        self,
        X: pd.DataFrame,
        purchases: np.ndarray,
        revenue: np.ndarray,
        X_valid: pd.DataFrame,
        purchases_valid: np.ndarray,
        revenue_valid: np.ndarray,
    ) -> Self:
        """Fit both models on the population rows of ``X``; stop early on ``X_valid``.

        Parameters
        ----------
        X, X_valid : pandas.DataFrame
            Customer features at training / validation cutoffs (validation from a later
            period). Rows outside the population (:func:`in_population`) are dropped.
        purchases, purchases_valid : numpy.ndarray
            Orders in ``[T, T + H)`` per row (count).
        revenue, revenue_valid : numpy.ndarray
            Value of those orders per row (EUR).

        Returns
        -------
        CLVModel
            ``self``, fitted.
        """
        frames = []
        for name, (XX, n, r) in {
            "X": (X, purchases, revenue),
            "X_valid": (X_valid, purchases_valid, revenue_valid),
        }.items():
            n_arr = np.asarray(n, dtype=np.float64).ravel()
            r_arr = np.asarray(r, dtype=np.float64).ravel()
            if not (len(XX) == n_arr.size == r_arr.size):
                raise ValueError(f"{name}, its purchases and revenue must have the same length")
            if (n_arr < 0).any() or not np.isfinite(n_arr).all():
                raise ValueError(f"purchases of {name} must be finite counts >= 0")
            keep = in_population(XX)
            frames.append((XX[keep], n_arr[keep], r_arr[keep]))
        (Xt, nt, rt), (Xv, nv, rv) = frames
        names = numeric_features(Xt)
        if not names or len(Xt) == 0 or len(Xv) == 0:
            raise ValueError("X and X_valid need numeric features and rows with orders_total >= 1")
        self.feature_names_ = names
        Ft, Fv = _frame(Xt, names), _frame(Xv, names)
        self.count_booster_, best_count = self._train("poisson", Ft, nt, None, Fv, nv, None)
        st, sv = (nt > 0) & (rt > 0), (nv > 0) & (rv > 0)
        if st.sum() < 2 or sv.sum() < 2:
            raise ValueError("X and X_valid need at least 2 rows each with orders of value > 0")
        self.spend_booster_, best_spend = self._train(
            "gamma",
            Ft[st].reset_index(drop=True),
            rt[st] / nt[st],
            nt[st],
            Fv[sv].reset_index(drop=True),
            rv[sv] / nv[sv],
            nv[sv],
        )
        self.best_iterations_ = {"count": best_count, "spend": best_spend}
        log.info("fitted CLVModel (H=%d days): trees %s", self.horizon_days, self.best_iterations_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "feature_names_"):
            raise NotTrainedError("CLVModel is not fitted; call fit first")

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Expected orders, spend per order and CLV in the next ``horizon_days`` per row.

        Parameters
        ----------
        X : pandas.DataFrame
            Customer features at T (extra columns ignored, missing ones NaN).

        Returns
        -------
        pandas.DataFrame
            Columns ``expected_purchases`` (orders), ``expected_spend`` (EUR per order) and
            ``clv`` (EUR), positional index; NaN for rows outside the population.
        """
        self._check_fitted()
        mask = in_population(X)
        n = s = np.empty(0)
        if mask.any():
            F = _frame(X[mask], self.feature_names_)
            n = np.asarray(self.count_booster_.predict(F), dtype=np.float64)
            s = np.asarray(self.spend_booster_.predict(F), dtype=np.float64)
        return _output(len(X), mask, n, s)

    def feature_importance(self) -> pd.DataFrame:
        """Total gain per feature of the ``count`` and ``spend`` models, by count gain."""
        self._check_fitted()
        gain = {
            "count": self.count_booster_.feature_importance(importance_type="gain"),
            "spend": self.spend_booster_.feature_importance(importance_type="gain"),
        }
        out = pd.DataFrame(gain, index=pd.Index(self.feature_names_, name="feature"))
        return out.sort_values("count", ascending=False, kind="stable")

    def get_meta(self) -> dict[str, Any]:
        """Everything but the trees, as JSON-able data."""
        return {
            "horizon_days": self.horizon_days,
            "params": self.params,
            "n_estimators": self.n_estimators,
            "early_stopping_rounds": self.early_stopping_rounds,
            "random_state": self.random_state,
            "num_threads": self.num_threads,
            "refit": self.refit,
            "feature_names": self.feature_names_,
            "best_iterations": self.best_iterations_,
        }

    def save(self, path: Path) -> Path:
        """Write both boosters (LightGBM text) and ``clv.json`` to directory ``path`` atomically."""
        self._check_fitted()
        path = Path(path)
        with atomic_directory(path) as tmp:
            self.count_booster_.save_model(str(tmp / COUNT_FILE))
            self.spend_booster_.save_model(str(tmp / SPEND_FILE))
            (tmp / META_FILE).write_text(json.dumps(self.get_meta(), indent=1, sort_keys=True))
        return path

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a model written by :meth:`save`."""
        import lightgbm as lgb

        path = Path(path)
        meta = json.loads((path / META_FILE).read_text())
        obj = cls(
            horizon_days=int(meta["horizon_days"]),
            params=meta["params"],
            n_estimators=int(meta["n_estimators"]),
            early_stopping_rounds=int(meta["early_stopping_rounds"]),
            random_state=int(meta["random_state"]),
            num_threads=int(meta["num_threads"]),
            refit=bool(meta["refit"]),
        )
        obj.feature_names_ = list(meta["feature_names"])
        obj.best_iterations_ = {k: int(v) for k, v in meta["best_iterations"].items()}
        obj.count_booster_ = lgb.Booster(model_file=str(path / COUNT_FILE))
        obj.spend_booster_ = lgb.Booster(model_file=str(path / SPEND_FILE))
        return obj


def rfm_summaries(X: pd.DataFrame) -> pd.DataFrame:
    """BG/NBD and Gamma-Gamma inputs from a customer snapshot (population rows only).

    Parameters
    ----------
    X : pandas.DataFrame
        Customer features at T with ``orders_total``, ``monetary_total`` (EUR),
        ``recency_days`` and ``first_order_days`` (days).

    Returns
    -------
    pandas.DataFrame
        Positional rows of the population (:func:`in_population`): ``x`` (repeat orders),
        ``t_x`` (days from the first to the last order), ``T`` (days from the first order
        to T), ``orders`` (count) and ``mean_value`` (EUR per order, all orders before T).
    """
    missing = [col for col in (ORDERS, MONETARY, RECENCY, FIRST_ORDER) if col not in X.columns]
    if missing:
        raise KlantbeeldError(f"BG/NBD summaries need snapshot columns {missing}")
    pop = X[in_population(X)]
    orders = pop[ORDERS].to_numpy(dtype=np.float64)
    age = pop[FIRST_ORDER].to_numpy(dtype=np.float64)
    t_x = np.clip(age - pop[RECENCY].to_numpy(dtype=np.float64), 0.0, age)
    x = orders - 1
    return pd.DataFrame(
        {
            "x": x,
            "t_x": np.where(x > 0, t_x, 0.0),
            "T": age,
            "orders": orders,
            "mean_value": pop[MONETARY].to_numpy(dtype=np.float64) / orders,
        }
    )


class BGNBDGammaGamma:
    """Baseline: BG/NBD counts times Gamma-Gamma spend, from order history alone.

    Parameters
    ----------
    horizon_days : int
        H, days predicted after T.

    Attributes
    ----------
    bgnbd_ : models.bgnbd.BGNBDParams
        Fitted on every population customer's ``(x, t_x, T)`` in days (``alpha`` in days).
    gamma_gamma_ : models.gamma_gamma.GammaGammaParams
        Fitted on the customers whose orders before T have a positive mean value, on the
        mean of *all* their orders (``x = orders``): one-time buyers are most of a shop, and
        their first order is the only evidence of their spend level.
    """

    def __init__(self, horizon_days: int = 90) -> None:
        self.horizon_days = horizon_days

    def fit(self, X: pd.DataFrame) -> Self:
        """Fit both parts on the snapshot ``X`` (see :func:`rfm_summaries`); return self."""
        s = rfm_summaries(X)
        if len(s) < 2:
            raise KlantbeeldError("BG/NBD + Gamma-Gamma: need at least 2 customers with orders")
        self.bgnbd_ = bgnbd.fit(s["x"].to_numpy(), s["t_x"].to_numpy(), s["T"].to_numpy())
        ok = (s["mean_value"] > 0).to_numpy()
        self.gamma_gamma_ = gamma_gamma.fit(
            s["orders"].to_numpy()[ok], s["mean_value"].to_numpy()[ok]
        )
        return self

    def predict_frame(self, X: pd.DataFrame) -> pd.DataFrame:
        """Same output as :meth:`CLVModel.predict_frame` (orders, EUR per order, EUR)."""
        if not hasattr(self, "bgnbd_"):
            raise NotTrainedError("BGNBDGammaGamma is not fitted; call fit first")
        mask = in_population(X)
        s = rfm_summaries(X)
        n = bgnbd.expected_in_holdout(
            self.bgnbd_,
            float(self.horizon_days),
            s["x"].to_numpy(),
            s["t_x"].to_numpy(),
            s["T"].to_numpy(),
        )
        spend = gamma_gamma.expected_spend(
            self.gamma_gamma_, s["orders"].to_numpy(), s["mean_value"].clip(lower=0).to_numpy()
        )
        return _output(len(X), mask, np.asarray(n), spend)

    def params(self) -> dict[str, float]:
        """Fitted parameters as flat floats (``bgnbd_r``, ..., ``gamma_gamma_gamma``)."""
        b, g = self.bgnbd_, self.gamma_gamma_
        return {
            "bgnbd_r": b.r,
            "bgnbd_alpha_days": b.alpha,
            "bgnbd_a": b.a,
            "bgnbd_b": b.b,
            "gamma_gamma_p": g.p,
            "gamma_gamma_q": g.q,
            "gamma_gamma_gamma_eur": g.gamma,
        }
