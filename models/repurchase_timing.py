"""Repurchase timing: in which of the next W weeks will a customer buy an item (or category) again?

:class:`RepurchaseTimingModel` is a discrete-time hazard model: the hazard
``h_w = P(repurchase in week w | none in weeks 1..w-1)`` of every customer x item pair at
cutoff T is a LightGBM binary classifier on the rows of the pair x week hazard table
(:mod:`models.repurchase_hazard`: pair features at T plus the week index and the age of
the pair's cycle at that week; pairs without a purchase are censored, never negatives).
Hazards turn into the weekly distribution of the next purchase
(:mod:`models.repurchase_distribution`); the expected next purchase is its median given a
purchase within the horizon.

The family's other modules: :mod:`models.repurchase_baselines` (interval baselines in the
same weekly form), :mod:`models.repurchase_inputs` (pair features from a snapshot) and
:mod:`models.repurchase_pyfunc` (the MLflow wrapper). Their public names are re-exported
here because training, batch scoring and serving import the family from this one module.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from klantbeeld.atomic import atomic_directory
from models.repurchase_baselines import IntervalBaseline
from models.repurchase_distribution import (
    DAYS_PER_WEEK,
    combine_first_purchase,
    cumulative_at_days,
    distribution_frame,
    distribution_to_hazards,
    expected_days,
    hazards_to_distribution,
    median_days,
    restricted_mean_days,
    week_columns,
    window_probability,
)
from models.repurchase_hazard import (
    AGE_FEATURE,
    CYCLE_COLS,
    ELAPSED_COL,
    WEEK_FEATURE,
    expand_weeks,
    hazard_feature_names,
    hazard_table,
    validate_labels,
)
from models.repurchase_inputs import CUSTOMER_GROUPS, CUSTOMER_PREFIX, pair_features, pair_key

__all__ = [
    "AGE_FEATURE",
    "CUSTOMER_GROUPS",
    "CUSTOMER_PREFIX",
    "CYCLE_COLS",
    "DAYS_PER_WEEK",
    "ELAPSED_COL",
    "WEEK_FEATURE",
    "IntervalBaseline",
    "RepurchaseTimingModel",
    "combine_first_purchase",
    "cumulative_at_days",
    "distribution_frame",
    "distribution_to_hazards",
    "expected_days",
    "hazards_to_distribution",
    "median_days",
    "pair_features",
    "pair_key",
    "restricted_mean_days",
    "week_columns",
    "window_probability",
]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1


class RepurchaseTimingModel(BaseEstimator):
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
        return expand_weeks(base, week_of_row, self._elapsed_idx, self._cycle_idx)

    def _hazard_table(
        self,
        base: np.ndarray,
        event_week: np.ndarray,
        at_risk: np.ndarray,
        rng: np.random.Generator | None,
        max_negative_rows: int | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return hazard_table(
            base,
            event_week,
            at_risk,
            weeks=self.weeks,
            elapsed_idx=self._elapsed_idx,
            cycle_idx=self._cycle_idx,
            rng=rng,
            max_negative_rows=max_negative_rows,
        )

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
        self.hazard_feature_names_ = hazard_feature_names(names, self._cycle_idx)
        seed = 0 if self.random_state is None else int(self.random_state)
        rng = np.random.default_rng(seed)
        ev, risk = validate_labels(len(X), event_week, at_risk_weeks, self.weeks)
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
            evv, riskv = validate_labels(len(Xv), evv, riskv, self.weeks)
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
