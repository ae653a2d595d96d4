"""Repurchase timing: in which of the next W weeks will a customer buy an item (or category) again?

The model is a discrete-time hazard model. For every customer x item pair at cutoff T and
every week ``w = 1..W`` the pair is *at risk* (not yet repurchased since T, still observed),
the hazard ``h_w = P(repurchase in week w | none in weeks 1..w-1)`` is a LightGBM binary
classifier on the pair's features at T plus the week index and the age of the pair's
cycle at that week (days since the last purchase + days into the horizon, absolute and
relative to the customer's and the item's cycle). The hazard table has one row per pair x
week at risk: a pair that repurchased in week ``k`` gives rows ``1..k`` (target 1 at ``k``),
a pair that did not repurchase during its observed ``c`` weeks gives rows ``1..c``, all 0 —
it is *censored* at ``c``, never a "never buys again" negative. Rows with target 0 can be
subsampled (kept rows reweighted by the inverse rate) to bound the table.

Hazards turn into a distribution: ``p_w = h_w * prod_{j<w}(1 - h_j)`` and
``p_none = prod_{j<=W}(1 - h_j)``. Days are measured from T; week ``w`` covers days
``(7(w-1), 7w]``; within a week the cumulative probability is linear in days. The expected
next purchase (``expected_days``) is the median of the distribution given a purchase within
the horizon — the moment to time a reminder, read together with ``p_within_horizon``; the
plain median (:func:`median_days`) extrapolates beyond the horizon with week W's hazard,
capped at ``max_days``.

Baselines (:class:`IntervalBaseline`) turn a point forecast — the item's median interval or
the customer's own mean interval for the item — into the same weekly form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from klantbeeld.atomic import atomic_directory

log = logging.getLogger(__name__)

DAYS_PER_WEEK = 7
ELAPSED_COL = "days_since_last"
CYCLE_COLS = ("own_cycle_days", "median_cycle_days")
WEEK_FEATURE = "week"
AGE_FEATURE = "age_at_week_days"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------
# Distribution math (pure numpy; tested on hand-worked numbers)
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# Hazard table
# --------------------------------------------------------------------------------------
def _validate_labels(
    n: int, event_week: Any, at_risk_weeks: Any, weeks: int
) -> tuple[np.ndarray, np.ndarray]:
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


class RepurchaseTimingModel:
    """Discrete-time hazard model of the week of next purchase (LightGBM).

    Parameters
    ----------
    weeks : int
        Horizon W in weeks.
    elapsed_col : str
        Column of X with the days from the pair's last purchase to T.
    cycle_cols : sequence of str
        Columns of X with cycle lengths in days (customer's own, item's median); the age of
        the pair at each week is also given relative to each of them.
    n_estimators, learning_rate, num_leaves, min_child_samples, reg_lambda :
        LightGBM parameters (``n_estimators`` is the maximum with early stopping).
    max_negative_rows : int or None
        Cap on hazard-table rows with target 0; above it they are subsampled uniformly
        and the kept ones weighted by the inverse sampling rate. None keeps all.
    early_stopping_rounds : int
        Rounds without improvement of the validation log-loss before stopping (only
        when ``eval_set`` is passed to :meth:`fit`).
    random_state : int or None
        Seed of the subsampling and of LightGBM.
    n_jobs : int or None
        LightGBM threads; None lets LightGBM decide.
    max_days : float
        Cap of the expected-days extrapolation beyond the horizon.

    Attributes
    ----------
    booster_ : lightgbm.Booster
    feature_names_ : list[str]
        Pair feature columns used (numeric columns of X at fit time).
    hazard_feature_names_ : list[str]
        ``feature_names_`` plus the week and age features.
    best_iteration_ : int
    n_hazard_rows_ : int
        Rows of the (subsampled) training hazard table.
    """

    def __init__(
        self,
        weeks: int = 12,
        *,
        elapsed_col: str = ELAPSED_COL,
        cycle_cols: Sequence[str] = CYCLE_COLS,
        n_estimators: int = 300,
        learning_rate: float = 0.08,
        num_leaves: int = 31,
        min_child_samples: int = 100,
        reg_lambda: float = 1.0,
        max_negative_rows: int | None = 300_000,
        early_stopping_rounds: int = 30,
        random_state: int | None = 42,
        n_jobs: int | None = None,
        max_days: float = 365.0,
    ):
        self.weeks = weeks
        self.elapsed_col = elapsed_col
        self.cycle_cols = cycle_cols
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.max_negative_rows = max_negative_rows
        self.early_stopping_rounds = early_stopping_rounds
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.max_days = max_days

    # -- features ------------------------------------------------------------------------
    def _pair_matrix(self, X: pd.DataFrame, names: list[str]) -> np.ndarray:
        missing = [c for c in names if c not in X.columns]
        if missing:
            raise ValueError(f"X is missing feature columns {missing[:5]}")
        return X[names].to_numpy(dtype=np.float32, na_value=np.nan)

    def _expand(self, base: np.ndarray, week_of_row: np.ndarray) -> np.ndarray:
        """Append week index and the pair's age at that week to pair features."""
        elapsed = base[:, self._elapsed_idx]
        age = elapsed + DAYS_PER_WEEK * week_of_row - DAYS_PER_WEEK / 2.0
        extra = [week_of_row.astype(np.float32), age]
        for idx in self._cycle_idx:
            cyc = base[:, idx]
            with np.errstate(divide="ignore", invalid="ignore"):
                extra.append(np.where(cyc > 0, age / cyc, np.nan))
        return np.hstack([base, np.column_stack(extra).astype(np.float32)])

    def _hazard_table(
        self,
        base: np.ndarray,
        event_week: np.ndarray,
        at_risk: np.ndarray,
        rng: np.random.Generator | None,
        max_negative_rows: int | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n_neg = int(
            sum(int(((at_risk >= w) & (event_week != w)).sum()) for w in range(1, self.weeks + 1))
        )
        rate = 1.0
        if max_negative_rows is not None and n_neg > max_negative_rows:
            rate = max_negative_rows / n_neg
        parts, ys, ws = [], [], []
        for w in range(1, self.weeks + 1):
            pos = np.flatnonzero(event_week == w)
            neg = np.flatnonzero((at_risk >= w) & (event_week != w))
            if rate < 1.0 and rng is not None:
                neg = neg[rng.random(neg.size) < rate]
            idx = np.concatenate([pos, neg])
            parts.append(self._expand(base[idx], np.full(idx.size, w, dtype=np.float32)))
            ys.append(np.concatenate([np.ones(pos.size), np.zeros(neg.size)]))
            ws.append(np.concatenate([np.ones(pos.size), np.full(neg.size, 1.0 / rate)]))
        return np.vstack(parts), np.concatenate(ys), np.concatenate(ws)

    # -- fit / predict -------------------------------------------------------------------
    def fit(
        self,
        X: pd.DataFrame,
        event_week: Any,
        at_risk_weeks: Any = None,
        *,
        eval_set: tuple[pd.DataFrame, Any, Any] | None = None,
    ) -> RepurchaseTimingModel:
        """Fit the weekly hazard on pairs observed after one or more cutoffs.

        Parameters
        ----------
        X : DataFrame of shape (n, f)
            Pair features at the pair's cutoff; every numeric/bool column is used
            (id and string columns are ignored). Must hold ``elapsed_col``.
        event_week : array-like of int, shape (n,)
            Week 1..W of the first purchase after the cutoff, 0 when none was observed.
        at_risk_weeks : array-like of int, shape (n,), optional
            For pairs without a purchase, the number of weeks they were observed (censored
            there); default W (the whole horizon observed).
        eval_set : (X_val, event_week_val, at_risk_weeks_val), optional
            A later period for early stopping on the hazard log-loss.

        Returns
        -------
        self
        """
        import lightgbm as lgb

        if self.weeks < 1:
            raise ValueError(f"weeks must be >= 1, got {self.weeks}")
        if not isinstance(X, pd.DataFrame):
            raise ValueError("X must be a pandas DataFrame of pair features")
        if self.elapsed_col not in X.columns:
            raise ValueError(f"X must have the column elapsed_col={self.elapsed_col!r}")
        names = [
            str(c)
            for c in X.columns
            if pd.api.types.is_numeric_dtype(X[c]) or pd.api.types.is_bool_dtype(X[c])
        ]
        self.feature_names_ = names
        self._paths: Any = None  # explain()'s tree-path table, of the booster fitted here
        self._elapsed_idx = names.index(self.elapsed_col)
        self._cycle_idx = [names.index(c) for c in self.cycle_cols if c in names]
        self.hazard_feature_names_ = (
            names
            + [WEEK_FEATURE, AGE_FEATURE]
            + [f"{AGE_FEATURE}_over_{names[i]}" for i in self._cycle_idx]
        )
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        ev, risk = _validate_labels(len(X), event_week, at_risk_weeks, self.weeks)
        Xh, y, wt = self._hazard_table(
            self._pair_matrix(X, names), ev, risk, rng, self.max_negative_rows
        )
        self.n_hazard_rows_ = int(y.size)
        self.base_hazard_ = float(np.average(y, weights=wt)) if y.size else 0.0
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "max_bin": 63,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }
        if self.n_jobs is not None:
            params["num_threads"] = int(self.n_jobs)
        train = lgb.Dataset(
            Xh, y, weight=wt, feature_name=self.hazard_feature_names_, free_raw_data=True
        )
        valid_sets: list[Any] = []
        callbacks: list[Any] = []
        if eval_set is not None:
            Xv, evv, riskv = eval_set
            evv, riskv = _validate_labels(len(Xv), evv, riskv, self.weeks)
            Xvh, yv, wv = self._hazard_table(
                self._pair_matrix(Xv, names),
                evv,
                riskv,
                np.random.default_rng(seed + 1),
                self.max_negative_rows // 3 if self.max_negative_rows else None,
            )
            valid_sets = [lgb.Dataset(Xvh, yv, weight=wv, reference=train)]
            callbacks = [lgb.early_stopping(self.early_stopping_rounds, verbose=False)]
        del Xh
        self.booster_ = lgb.train(
            params,
            train,
            num_boost_round=self.n_estimators,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        best = self.booster_.best_iteration
        self.best_iteration_ = int(best) if best and best > 0 else self.booster_.current_iteration()
        log.info(
            "repurchase hazard fitted: %d pairs, %d hazard rows, %d trees",
            len(X),
            self.n_hazard_rows_,
            self.best_iteration_,
        )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "booster_"):
            from klantbeeld.errors import NotTrainedError

            raise NotTrainedError("RepurchaseTimingModel is not fitted; call fit() or load()")

    def predict_hazard(self, X: pd.DataFrame, *, batch_size: int = 250_000) -> np.ndarray:
        """Return weekly hazards, shape (n, W), probabilities."""
        self._check_fitted()
        base = self._pair_matrix(X, self.feature_names_)
        n = base.shape[0]
        out = np.empty((n, self.weeks))
        for start in range(0, n, batch_size):
            chunk = base[start : start + batch_size]
            m = chunk.shape[0]
            rows = np.repeat(chunk, self.weeks, axis=0)
            wk = np.tile(np.arange(1, self.weeks + 1, dtype=np.float32), m)
            pred = self.booster_.predict(self._expand(rows, wk), num_iteration=self.best_iteration_)
            out[start : start + m] = np.asarray(pred).reshape(m, self.weeks)
        return out

    def predict_distribution(self, X: pd.DataFrame) -> np.ndarray:
        """Return ``p_week_1..p_week_W, p_none`` per pair, shape (n, W + 1), rows sum to 1."""
        return hazards_to_distribution(self.predict_hazard(X))

    def predict_expected_days(self, X: pd.DataFrame, *, conditional: bool = True) -> np.ndarray:
        """Return the expected days from T to the next purchase (see :func:`expected_days`)."""
        return expected_days(
            self.predict_distribution(X), conditional=conditional, max_days=self.max_days
        )

    def predict_frame(
        self,
        X: pd.DataFrame,
        as_of: Any = None,
        keys: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Return a table of the predicted distribution per pair.

        Parameters
        ----------
        X : DataFrame
            Pair features (as for :meth:`fit`); columns named in ``keys`` are copied.
        as_of : datetime-like, optional
            Cutoff T; when given, ``expected_date`` = T + expected_days (date).
        keys : sequence of str
            Id columns of X to carry over (e.g. ``customer_id``, ``item_id``).

        Returns
        -------
        DataFrame
            ``keys``, ``p_week_1..p_week_W``, ``p_none``, ``p_within_horizon``,
            ``expected_days`` (median, days after T) and, with ``as_of``, ``expected_date``.
        """
        dist = self.predict_distribution(X)
        return distribution_frame(dist, X, as_of=as_of, keys=keys, max_days=self.max_days)

    def explain(self, X: pd.DataFrame, k: int = 3) -> pd.DataFrame:
        """Top-``k`` features pushing each pair's weekly hazard up and down.

        Decision-path contributions to the hazard margin (log-odds, :mod:`models.tree_paths`),
        averaged over the ``weeks`` of the horizon; names are those of
        ``hazard_feature_names_`` (pair features, ``week``, the pair's age at that week and
        its ratios to the cycles).

        Parameters
        ----------
        X : DataFrame
            Pair features (as for :meth:`predict_hazard`).
        k : int
            Names per direction.

        Returns
        -------
        DataFrame
            ``top_up``, ``top_down`` (lists of up to ``k`` names), index of ``X``.
        """
        from models.base import TOP_DOWN, TOP_UP, top_k_names

        self._check_fitted()
        paths = getattr(self, "_paths", None)
        if paths is None:
            from models.tree_paths import TreePaths

            paths = self._paths = TreePaths(self.booster_, num_iteration=self.best_iteration_)
        base = self._pair_matrix(X, self.feature_names_)
        total = np.zeros((len(base), len(self.hazard_feature_names_)))
        for week in range(1, self.weeks + 1):
            rows = self._expand(base, np.full(len(base), week, dtype=np.float32))
            total += paths.contributions(rows)
        ups, downs = top_k_names(total / self.weeks, self.hazard_feature_names_, k)
        return pd.DataFrame({TOP_UP: ups, TOP_DOWN: downs}, index=X.index)

    # -- persistence ---------------------------------------------------------------------
    def get_params(self) -> dict[str, Any]:
        """Return the constructor arguments (sklearn convention)."""
        return {
            "weeks": self.weeks,
            "elapsed_col": self.elapsed_col,
            "cycle_cols": list(self.cycle_cols),
            "n_estimators": self.n_estimators,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "reg_lambda": self.reg_lambda,
            "max_negative_rows": self.max_negative_rows,
            "early_stopping_rounds": self.early_stopping_rounds,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
            "max_days": self.max_days,
        }

    def save(self, path: str | Path) -> Path:
        """Write the fitted model to folder ``path`` (``booster.txt`` + ``meta.json``), atomically.

        Returns
        -------
        Path
            The folder written.
        """
        self._check_fitted()
        path = Path(path)
        with atomic_directory(path) as tmp:
            self.booster_.save_model(str(tmp / "booster.txt"), num_iteration=self.best_iteration_)
            meta = {
                "format_version": _FORMAT_VERSION,
                "kind": "repurchase_timing_hazard",
                "params": self.get_params(),
                "feature_names": self.feature_names_,
                "hazard_feature_names": self.hazard_feature_names_,
                "best_iteration": self.best_iteration_,
                "n_hazard_rows": self.n_hazard_rows_,
                "base_hazard": self.base_hazard_,
            }
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RepurchaseTimingModel:
        """Read a model written by :meth:`save`."""
        import lightgbm as lgb

        path = Path(path)
        meta_file = path / "meta.json"
        if not meta_file.exists():
            from klantbeeld.errors import NotTrainedError

            raise NotTrainedError(f"no repurchase_timing model at {path}")
        meta = json.loads(meta_file.read_text())
        model = cls(**meta["params"])
        model.feature_names_ = list(meta["feature_names"])
        model.hazard_feature_names_ = list(meta["hazard_feature_names"])
        model._elapsed_idx = model.feature_names_.index(model.elapsed_col)
        model._cycle_idx = [
            model.feature_names_.index(c) for c in model.cycle_cols if c in model.feature_names_
        ]
        model.booster_ = lgb.Booster(model_file=str(path / "booster.txt"))
        model.best_iteration_ = model.booster_.current_iteration()
        model.n_hazard_rows_ = int(meta["n_hazard_rows"])
        model.base_hazard_ = float(meta["base_hazard"])
        return model


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


# --------------------------------------------------------------------------------------
# Baselines in the same weekly form
# --------------------------------------------------------------------------------------
class IntervalBaseline:
    """Point forecast "last purchase + typical interval", spread into a weekly distribution.

    The forecast days to next purchase are ``d = cycle - days_since_last``; the distribution
    is a normal around ``d`` with standard deviation ``cv * cycle`` (at least
    ``min_sd_days``), truncated to ``(0, inf)`` (the purchase has not happened by T).

    Parameters
    ----------
    kind : {"item_median", "customer_mean"}
        ``item_median``: cycle = the item's median interval (``median_cycle_days``).
        ``customer_mean``: cycle = the customer's own mean interval for the item
        (``own_cycle_days``), falling back to the item's median.
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
            cyc = np.where(np.isfinite(own) & (own > 0), own, item)
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


# --------------------------------------------------------------------------------------
# Model input from a feature snapshot
# --------------------------------------------------------------------------------------
CUSTOMER_PREFIX = "cust_"
CUSTOMER_GROUPS = ("profile", "rfm", "intervals", "sessions")
"""Customer-level feature groups joined to every pair by default (activity and affinity
groups add width, hence training time, for little gain in timing)."""


def pair_key(level: str) -> str:
    """Return the second key column of a pair: ``item_id`` or ``category``."""
    from features import contract as c

    if level == "item":
        return c.ITEM_ID
    if level == "category":
        return c.CATEGORY
    raise ValueError(f"level must be 'item' or 'category', got {level!r}")


def pair_features(
    snapshot: Any,
    level: str = "item",
    customer_groups: Sequence[str] | None = CUSTOMER_GROUPS,
) -> pd.DataFrame:
    """Model input for every pair of a snapshot: pair features plus customer features.

    Parameters
    ----------
    snapshot : features.snapshot.Snapshot
        Point-in-time snapshot at T.
    level : {"item", "category"}
        ``customer_item`` or ``customer_category`` pairs.
    customer_groups : sequence of str or None
        Feature groups (manifest ``group``) of the customer table to join; None joins
        every numeric customer feature.

    Returns
    -------
    DataFrame
        ``customer_id``, the pair key, the pair's cycle features (``purchases``,
        ``days_since_last`` (days), ``own_cycle_days``, ``median_cycle_days``, ...), then
        every numeric customer-level feature prefixed ``cust_``. One row per pair, in the
        snapshot's order.
    """
    from features import contract as c

    key = pair_key(level)
    pairs = snapshot.customer_item if level == "item" else snapshot.customer_category
    cust = snapshot.customer
    num = [
        col
        for col in cust.columns
        if col != c.CUSTOMER_ID
        and (pd.api.types.is_numeric_dtype(cust[col]) or pd.api.types.is_bool_dtype(cust[col]))
    ]
    if customer_groups is not None:
        wanted = {
            s.name
            for s in snapshot.manifest
            if getattr(s, "entity", "customer") == "customer" and s.group in customer_groups
        }
        num = [col for col in num if col in wanted]
    cust = cust[[c.CUSTOMER_ID, *num]].rename(columns={n: CUSTOMER_PREFIX + n for n in num})
    out = pairs.merge(cust, on=c.CUSTOMER_ID, how="left", sort=False, validate="many_to_one")
    front = [c.CUSTOMER_ID, key]
    return out[front + [col for col in out.columns if col not in front]].reset_index(drop=True)
