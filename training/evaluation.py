"""Fit a binary scorer and its baselines on backtest frames and measure them on the test
period: ROC-AUC, PR-AUC, Brier, calibration by decile, the seasonal adjustment and, on the
demo shop, the oracle that knows the true probabilities (:func:`fit_evaluate`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.settings import Settings
from models.base import Scorer
from models.baselines import LogisticBaseline, RFMBaseline
from models.lgbm import GradientBoostedScorer
from models.seasonality import IntensityShift, seasonal_shift
from training import metrics as M
from training.backtest import BacktestConfig
from training.binary_tasks import LABEL, BinaryTask
from training.frames import BacktestFrames

log = logging.getLogger(__name__)

CALIBRATION_MIN_BIN = 200


def oracle_for(
    task: BinaryTask,
    data: Path,
    as_of: datetime,
    settings: Settings,
    customer_ids: Sequence[str] | np.ndarray | None = None,
    shop: Any = None,
) -> pd.DataFrame:
    """The task's demo-shop oracle at ``as_of``, computed only for ``customer_ids``.

    The full oracle integrates every customer of the shop and scans the purchases of the
    whole ``events`` folder, so its time grows with the shop, not with the rows it is
    compared on. With ``customer_ids`` the oracle computes only those customers (each
    customer's probability depends only on that customer's own state, so the values are
    the full oracle's rows); with ``shop`` too it reads their purchases from that opened
    shop instead of the folder.

    Parameters
    ----------
    task : BinaryTask
        Its ``oracle`` is called; a task without one raises ``ValueError``.
    data : Path
        The demo shop folder (with ``truth/``).
    as_of : datetime
        Cutoff T (naive UTC).
    settings : Settings
        Horizons.
    customer_ids : sequence or array of str, optional
        The customers to compute; ``None``: every customer created before ``as_of``.
    shop : features.shop.Shop, optional
        An opened shop on ``data`` holding every event of ``customer_ids`` (a customer
        sample that contains them is enough): the oracle reads their purchases from it,
        which is faster than scanning the full ``events`` folder. Ignored without
        ``customer_ids``.

    Returns
    -------
    pandas.DataFrame
        ``customer_id, p`` (probability of label 1), in the order of the shop's customer
        ids; ids unknown to the shop or created on or after ``as_of`` are absent.
    """
    if task.oracle is None:
        raise ValueError(f"task {task.name!r} has no oracle")
    if customer_ids is None:
        return task.oracle(Path(data), as_of, settings)
    events = None
    if shop is not None:
        ev = shop.events
        buys = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
        events = buys.select(c.CUSTOMER_ID, c.ITEM_ID, c.TS, c.EVENT_TYPE).to_pyarrow()
    ids = [str(i) for i in customer_ids]
    return task.oracle(Path(data), as_of, settings, customer_ids=ids, events=events)


def seasonal_shifts(
    scorer: GradientBoostedScorer, frames: BacktestFrames, task: BinaryTask
) -> tuple[IntensityShift, IntensityShift] | None:
    """The seasonal adjustments of a fitted scorer for the test period and for deployment.

    Measured on ``frames.seasonal`` (the lagged cutoffs, :mod:`models.seasonality`) with
    the scorer's calibrated probabilities.

    Returns
    -------
    tuple of IntensityShift, or None
        ``(test, deploy)``: from the validation season to the test season, and to the
        season that starts at the end of the data; None without lagged frames or when
        either cannot be measured.
    """
    if frames.seasonal is None or frames.seasonal_plan is None:
        return None
    dates = {k: t.date().isoformat() for k, t in frames.seasonal_plan.cutoffs.items()}
    p = {k: scorer.predict_calibrated(df[frames.features]) for k, df in frames.seasonal.items()}
    y = {k: df[LABEL].to_numpy(dtype=np.int8) for k, df in frames.seasonal.items()}
    out = []
    for target in ("test", "deploy"):
        shift = seasonal_shift(
            p["reference"],
            y["reference"],
            p[target],
            y[target],
            task.label_is_purchase,
            reference=dates["reference"],
            target=dates[target],
        )
        if shift is None:
            return None
        out.append(shift)
    log.info(
        "%s seasonal adjustment: log intensity multiplier %+.3f (test), %+.3f (deployment)",
        task.name,
        out[0].log_multiplier,
        out[1].log_multiplier,
    )
    return out[0], out[1]


@dataclass
class Evaluation:
    """Fitted scorer and everything measured on the test period."""

    scorer: GradientBoostedScorer
    baselines: dict[str, Scorer]
    metrics: dict[str, float]
    scores: dict[str, np.ndarray]
    y_test: np.ndarray
    calibration: pd.DataFrame
    n_train_used: int
    fit_seconds: float
    oracle_rows: np.ndarray | None = field(default=None, repr=False)


def sample_rows(df: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    """At most ``max_rows`` rows of ``df``, a seeded sample in the original order."""
    if len(df) <= max_rows:
        return df
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(df), size=max_rows, replace=False))
    return df.iloc[keep]


def calibration_check(table: pd.DataFrame, min_n: int = CALIBRATION_MIN_BIN) -> dict[str, float]:
    """Worst relative calibration error over deciles with at least ``min_n`` rows."""
    big = table[table.n >= min_n]
    return {
        "test_calibration_max_rel_error": float(big.relative_error.max()) if len(big) else np.nan,
        "test_calibration_deciles_within_10pct": float((big.relative_error <= 0.10).sum()),
        "test_calibration_deciles_within_2se": float(
            (abs(big.mean_predicted - big.observed_rate) <= 2 * big.std_error).sum()
        ),
        "test_calibration_deciles_checked": float(len(big)),
    }


def fit_evaluate(
    frames: BacktestFrames,
    task: BinaryTask,
    seed: int,
    config: BacktestConfig | None = None,
    oracle: pd.DataFrame | None = None,
) -> Evaluation:
    """Fit the scorer and baselines on ``frames`` and measure them on the test period.

    Parameters
    ----------
    config : BacktestConfig, optional
        Training-row cap and fitting threads.
    oracle : pandas.DataFrame, optional
        ``customer_id, p``: true probabilities for the test customers (demo shop).

    Returns
    -------
    Evaluation
        Metrics use the fixed names ``test_*``, ``valid_*``, ``baseline_rfm_*``,
        ``baseline_logreg_*`` and ``oracle_*``.
    """
    config = config or BacktestConfig()
    train = sample_rows(frames.train, config.max_train_rows, seed)
    X_tr, y_tr = train[frames.features], train[LABEL].to_numpy(dtype=np.int8)
    X_va, y_va = frames.xy("valid")
    X_te, y_te = frames.xy("test")

    t0 = time.perf_counter()
    scorer = task.make_scorer(seed, config.num_threads).fit(X_tr, y_tr, X_va, y_va)
    fit_seconds = time.perf_counter() - t0
    p_test = scorer.predict_calibrated(X_te)
    p_valid = scorer.calibrator_.predict(scorer.valid_raw_)  # out of sample even after a refit

    metrics: dict[str, float] = {}
    shifts = seasonal_shifts(scorer, frames, task)
    if shifts is not None:
        test_shift, deploy_shift = shifts
        table = M.calibration_table(y_te, p_test, bins=10)
        metrics.update(
            {f"{k}_unadjusted": v for k, v in calibration_check(table).items()},
        )
        metrics["test_brier_unadjusted"] = M.brier(y_te, p_test)
        metrics["seasonal_log_multiplier_test"] = test_shift.log_multiplier
        metrics["seasonal_log_multiplier_deploy"] = deploy_shift.log_multiplier
        p_test = test_shift.apply(p_test)
        scorer.seasonal_shift_ = deploy_shift
    metrics.update(M.binary_report(y_te, p_test).as_metrics("test"))
    metrics.update(M.binary_report(y_va, p_valid).as_metrics("valid"))
    metrics["train_rows"] = float(len(frames.train))
    metrics["train_rows_used"] = float(len(train))
    metrics["train_positive_rate"] = float(y_tr.mean())
    metrics["best_iteration"] = float(scorer.best_iteration_)
    metrics["fit_seconds"] = fit_seconds
    for method, b in scorer.calibration_brier_.items():
        metrics[f"calibration_brier_{method}"] = b
    table = M.calibration_table(y_te, p_test, bins=10)
    metrics.update(calibration_check(table))
    # the same rule on labels drawn from p_test itself: what a calibrated model can expect
    yardstick = M.calibration_yardstick(p_test, min_n=CALIBRATION_MIN_BIN, seed=seed)
    metrics["test_calibration_deciles_within_10pct_if_calibrated"] = yardstick.expected_bins_within
    metrics["test_calibration_all_deciles_pass_prob_if_calibrated"] = (
        yardstick.all_bins_pass_probability
    )

    scores = {"model": p_test}
    baselines: dict[str, Scorer] = {
        "rfm": RFMBaseline().fit(X_tr, y_tr),
        "logreg": LogisticBaseline().fit(X_tr, y_tr),
    }
    for name, base in baselines.items():
        p_base = base.predict_proba(X_te)
        scores[f"baseline {name}"] = p_base
        metrics.update(M.binary_report(y_te, p_base).as_metrics(f"baseline_{name}"))

    oracle_rows = None
    if oracle is not None:
        o = frames.test[[c.CUSTOMER_ID]].merge(oracle, on=c.CUSTOMER_ID, how="left")
        ok = o["p"].notna().to_numpy()
        oracle_rows = ok
        metrics["oracle_coverage"] = float(ok.mean())
        if ok.any() and len(np.unique(y_te[ok])) == 2:
            p_or = o["p"].to_numpy(dtype=np.float64)[ok]
            metrics.update(M.binary_report(y_te[ok], p_or).as_metrics("oracle"))
            metrics["test_roc_auc_oracle_rows"] = M.roc_auc(y_te[ok], p_test[ok])
            metrics["oracle_gap_roc_auc"] = (
                metrics["oracle_roc_auc"] - metrics["test_roc_auc_oracle_rows"]
            )
            # the same decile check on the true probabilities: how much of a miss is noise
            oracle_table = M.calibration_table(y_te[ok], p_or, bins=10)
            metrics.update(
                {
                    k.replace("test_", "oracle_", 1): v
                    for k, v in calibration_check(oracle_table).items()
                }
            )
            if ok.all():
                scores["oracle"] = p_or
    return Evaluation(
        scorer=scorer,
        baselines=baselines,
        metrics=metrics,
        scores=scores,
        y_test=y_te,
        calibration=table,
        n_train_used=len(train),
        fit_seconds=fit_seconds,
        oracle_rows=oracle_rows,
    )
