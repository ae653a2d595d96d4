"""The training job of binary customer scores (conversion intent, churn).

One call of :func:`run_scoring_job` is one MLflow run:

1. plan the backtest cutoffs from the data's time range (:mod:`training.backtest`); above
   ``BacktestConfig.max_customers`` customers, restrict the shop once to a seeded sample
   of customers (:func:`sample_customers`) that every later step reads;
2. build a point-in-time feature snapshot (the tables the scorers read) and the labels at
   every cutoff, and check at one training cutoff that events at or after T do not change
   the snapshot (point in time; on a nested sample of ``pit_customers`` when larger);
3. fit LightGBM on the stacked training cutoffs, early-stop on the validation cutoff,
   refit that many trees on training + validation rows and calibrate on cross-fitted
   validation margins (:class:`models.lgbm.GradientBoostedScorer`), score the test cutoff;
4. fit and score the RFM and logistic baselines on the same rows; on the demo shop
   (``<data>/truth`` exists) also the oracle that knows the true propensities;
5. log params, metrics, plots, the feature manifest, the input description and the
   pyfunc model; register it as ``challenger`` and promote it to ``champion`` when it
   beats the champion on the same test period (:mod:`training.registry`).

The steps live in modules of their own so tests can run them alone (label shuffling,
planted leaks): :mod:`training.binary_tasks` (what each score is), :mod:`training.sampling`
(open and sample the shop), :mod:`training.frames` (features + labels per cutoff),
:mod:`training.point_in_time` (the leak check) and :mod:`training.evaluation` (fit and
measure); this module orchestrates them and logs the run. Their public names are
re-exported here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from klantbeeld.settings import Settings
from models.seasonality import plan_seasonal
from training import metrics as M
from training.backtest import BacktestConfig, plan_backtest
from training.binary_tasks import CHURN, CONVERSION_INTENT, LABEL, TASKS, BinaryTask, OracleFn
from training.evaluation import (
    CALIBRATION_MIN_BIN,
    Evaluation,
    calibration_check,
    fit_evaluate,
    oracle_for,
    sample_rows,
    seasonal_shifts,
)
from training.frames import BacktestFrames, SnapshotFn, _KeepOnly, assemble, default_snapshot
from training.point_in_time import PointInTimeError, check_point_in_time, truncate_shop
from training.requirements import require, too_short
from training.result import TrainingResult
from training.sampling import (
    SAMPLE_TABLE_PREFIX,
    CustomerSample,
    PreparedShop,
    prepare_shop,
    sample_customers,
)
from training.threshold_curve import threshold_curve
from training.window import data_range as data_range  # re-exported (tests, notebooks)

__all__ = [
    "CALIBRATION_MIN_BIN",
    "CHURN",
    "CONVERSION_INTENT",
    "LABEL",
    "PRIMARY_METRIC",
    "SAMPLE_TABLE_PREFIX",
    "TASKS",
    "BacktestFrames",
    "BinaryTask",
    "CustomerSample",
    "Evaluation",
    "OracleFn",
    "PointInTimeError",
    "PreparedShop",
    "SnapshotFn",
    "assemble",
    "calibration_check",
    "check_point_in_time",
    "data_range",
    "default_snapshot",
    "fit_evaluate",
    "oracle_for",
    "prepare_shop",
    "run_scoring_job",
    "sample_customers",
    "sample_rows",
    "seasonal_shifts",
    "truncate_shop",
]

log = logging.getLogger(__name__)

PRIMARY_METRIC = "test_roc_auc"


def _dataset(frames: BacktestFrames, split: str, data: Path, task: BinaryTask) -> Any:
    """An MLflow dataset description (no data copied) of one backtest split."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models import infer_signature

    df = getattr(frames, split)
    cutoffs = frames.plan.train if split == "train" else (getattr(frames.plan, split),)
    cutoff_days = [t.date().isoformat() for t in cutoffs]
    desc: dict[str, Any] = {
        "data": str(Path(data).resolve()),
        "split": split,
        "cutoffs": cutoff_days,
        "horizon_days": frames.plan.horizon_days,
        "rows": len(df),
        "positive_rate": float(df[LABEL].mean()),
        "features": frames.features,
    }
    digest = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:8]
    sample = df[[*frames.features, LABEL]].head(50).copy()
    for col in sample.columns:
        if isinstance(sample[col].dtype, pd.CategoricalDtype):
            sample[col] = sample[col].astype(object)
    name = f"{task.name}-{split}-{'_'.join(cutoff_days)}-{len(df)}rows"
    with warnings.catch_warnings():
        # integer-column hint and "source can be interpreted in multiple ways": both benign
        warnings.simplefilter("ignore", UserWarning)
        schema = infer_signature(sample).inputs
        source = resolve_dataset_source(str(Path(data).resolve()))
    return MetaDataset(source, name, digest, schema)  # type: ignore[abstract]


def _plots(ev: Evaluation, frames: BacktestFrames, task: BinaryTask, out: Path) -> list[Path]:
    from training import plots

    X_te, _ = frames.xy("test")
    sample = X_te.sample(n=min(2000, len(X_te)), random_state=0)
    contrib = ev.scorer.contributions(sample)
    title = task.name.replace("_", " ")
    return [
        plots.gain_lift_chart(ev.y_test, ev.scores, out / "gain_lift.png", title),
        plots.calibration_curve(ev.calibration, out / "calibration.png", title),
        plots.feature_importance(
            ev.scorer.feature_importance(), out / "feature_importance.png", title
        ),
        plots.contribution_summary(contrib, sample, out / "contribution_summary.png", title),
    ]


def _champion_scorer(frames: BacktestFrames) -> Callable[[Any], float | None]:
    """``score_champion`` of :func:`training.log_run.log_training_run`: the champion's
    ROC-AUC on this run's test rows."""

    def score(champion: Any) -> float | None:
        X_te, y_te = frames.xy("test")
        p = np.asarray(champion.load().predict(X_te), dtype=np.float64)
        return M.roc_auc(y_te, p)

    return score


def run_scoring_job(
    task: BinaryTask,
    settings: Settings,
    data: Path,
    *,
    config: BacktestConfig | None = None,
    force: bool = False,
    snapshot_fn: SnapshotFn = default_snapshot,
    pit_check: bool = True,
    cache: dict[datetime, Any] | None = None,
    prepared: PreparedShop | None = None,
) -> TrainingResult:
    """Backtest, fit, evaluate, log, register and (maybe) promote one binary score.

    Parameters
    ----------
    task : BinaryTask
        :data:`CONVERSION_INTENT`, :data:`CHURN` or another binary task.
    settings : Settings
        Horizons, populations, seed and the MLflow store.
    data : Path
        The shop folder or DuckDB file. With a ``truth/`` folder inside (the demo
        shop) the oracle is measured too.
    config : BacktestConfig, optional
        Cutoff count and spacing, the training-row cap and the customer cap: a shop with
        more than ``config.max_customers`` customers is trained, checked and evaluated on
        the seeded sample of :func:`sample_customers` (params ``customers_sampled``,
        ``customers_total``).
    force : bool
        Make the new version champion regardless of metrics.
    snapshot_fn : callable
        ``(shop, as_of) -> Snapshot``; the project's builder by default.
    pit_check : bool
        Run the point-in-time check at the last training cutoff.
    cache : dict, optional
        Snapshots by cutoff, shared between jobs on the same data (and the same
        customer sample).
    prepared : PreparedShop, optional
        The opened and sampled shop from :func:`prepare_shop` (same data,
        ``max_customers`` and seed), shared between jobs; ``open_seconds`` and
        ``sample_seconds`` are then 0 in this job's metrics.

    Returns
    -------
    TrainingResult
    """
    import mlflow

    from models.pyfunc import log_scorer
    from training.log_run import log_training_run

    t0 = time.perf_counter()
    config = config or BacktestConfig()
    data = Path(data)
    shared = prepared is not None
    if prepared is None:
        prepared = prepare_shop(data, settings, config)
    elif (
        prepared.data.resolve() != data.resolve()
        or prepared.max_customers != config.max_customers
        or prepared.seed != settings.seed
    ):
        raise ValueError(
            "prepared was made for other data, max_customers or seed: "
            f"{prepared.data} / {prepared.max_customers} / {prepared.seed}"
        )
    start, end = prepared.data_range
    if prepared.profile is not None:
        require(task.name, prepared.profile, str(data))
    try:
        plan = plan_backtest(end, task.horizon_days(settings), config, data_start=start)
    except ValueError as exc:
        raise too_short(task.name, exc, str(data)) from None
    log.info("%s backtest plan: %s", task.name, plan.as_params())
    # every cutoff, the point-in-time check and the evaluation read the same sample
    sample = prepared.sample
    shop = sample.shop
    open_seconds = 0.0 if shared else prepared.open_seconds
    sample_seconds = 0.0 if shared else sample.seconds

    # the point-in-time check compares two snapshots; past config.pit_customers it runs on
    # a nested sample of that many customers instead of reusing a cutoff's snapshot
    pit_nested = sample.customers_sampled > config.pit_customers
    if cache is None:
        # hold only the snapshot the point-in-time check reuses, not every cutoff's (memory)
        cache = _KeepOnly({plan.train[-1]} if pit_check and not pit_nested else set())
    seasonal = plan_seasonal(
        plan.valid,
        plan.test,
        plan.test_end,
        plan.horizon_days,
        start,
        mode=config.seasonal_adjustment,
        lag_days=config.seasonal_lag_days,
        min_history_days=config.min_history_days,
    )
    frames = assemble(shop, task, plan, settings, snapshot_fn, cache, seasonal)
    t_pit = time.perf_counter()
    if pit_check and pit_nested:
        pit_shop = sample_customers(shop, config.pit_customers, settings.seed).shop
        check_point_in_time(pit_shop, plan.train[-1], snapshot_fn)
    elif pit_check:
        check_point_in_time(shop, plan.train[-1], snapshot_fn, reference=cache.get(plan.train[-1]))
    t_oracle = time.perf_counter()
    oracle = None
    truth = data / "truth"
    if task.oracle is not None and truth.is_dir():
        # on a sample, only the test rows' customers (the oracle is merged onto them)
        ids = frames.test[c.CUSTOMER_ID].to_numpy() if sample.sampled else None
        oracle = oracle_for(task, data, plan.test, settings, ids, shop if ids is not None else None)
    t_fit = time.perf_counter()
    ev = fit_evaluate(frames, task, settings.seed, config, oracle)
    t_log = time.perf_counter()
    ev.metrics.update(
        {
            "open_seconds": open_seconds,
            "sample_seconds": sample_seconds,
            "snapshot_seconds": frames.snapshot_seconds,
            "labels_seconds": frames.labels_seconds,
            "pit_check_seconds": t_oracle - t_pit,
            "oracle_seconds": t_fit - t_oracle,
            "evaluate_seconds": t_log - t_fit,
        }
    )

    params: dict[str, Any] = {
        **plan.as_params(),
        "data": str(data.resolve()),
        "seed": settings.seed,
        "n_features": len(frames.features),
        "step_days": config.step_days,
        "max_train_rows": config.max_train_rows,
        "num_threads": config.num_threads,
        "calibration_method": ev.scorer.calibrator_.method,
        "scorer": type(ev.scorer).__name__,
        "n_estimators_max": ev.scorer.n_estimators,
        "early_stopping_rounds": ev.scorer.early_stopping_rounds,
        "refit_on_valid": ev.scorer.refit,
        "point_in_time_check": pit_check,
        "max_customers": config.max_customers,
        "pit_customers": config.pit_customers,
        "customers_total": sample.customers_total,
        "customers_sampled": sample.customers_sampled,
        "seasonal_adjustment": config.seasonal_adjustment,
        "seasonal_cutoffs": (
            "none"
            if ev.scorer.seasonal_shift_ is None or seasonal is None
            else ",".join(t.date().isoformat() for t in seasonal.cutoffs.values())
        ),
        **{f"lgb_{k}": v for k, v in ev.scorer.lgb_params().items()},
    }

    def log_artifacts(out: Path) -> None:
        for split, context in (("train", "training"), ("valid", "validation"), ("test", "testing")):
            mlflow.log_input(_dataset(frames, split, data, task), context=context)
        used = set(frames.features)
        manifest = [dataclasses.asdict(s) for s in frames.manifest if s.name in used]
        mlflow.log_dict({"model": task.name, "features": manifest}, "feature_manifest.json")
        for p in _plots(ev, frames, task, out / "plots"):
            mlflow.log_artifact(str(p), artifact_path="plots")
        ev.calibration.to_csv(out / "calibration_test.csv", index=False)
        ev.scorer.feature_importance().rename_axis("feature").to_csv(out / "feature_importance.csv")
        M.gain_curve(ev.y_test, ev.scores["model"]).to_csv(out / "gain_curve.csv", index=False)
        threshold_curve(ev.y_test, ev.scores["model"], ev.scores.get("oracle")).to_csv(
            out / "threshold_curve.csv", index=False
        )
        for f in (
            "calibration_test.csv",
            "feature_importance.csv",
            "gain_curve.csv",
            "threshold_curve.csv",
        ):
            mlflow.log_artifact(str(out / f), artifact_path="evaluation")

    X_te, _ = frames.xy("test")
    result = log_training_run(
        task.name,
        settings,
        test_start=plan.test,
        test_end=plan.test_end,
        params=params,
        metrics=ev.metrics,
        log_model=lambda name: log_scorer(ev.scorer, X_te.head(5), name=name),
        primary_metric=PRIMARY_METRIC,
        force=force,
        started=t0,
        description=f"{task.name}: {task.description}",
        log_artifacts=log_artifacts,
        score_champion=_champion_scorer(frames),
        as_of=plan.test,
        n_train=ev.n_train_used,
        n_test=len(frames.test),
        cutoffs=plan.as_params(),
    )
    # measured once the run is closed and registered, so logged to it afterwards
    ev.metrics["log_register_seconds"] = time.perf_counter() - t_log
    mlflow.MlflowClient().log_metric(
        str(result.run_id), "log_register_seconds", ev.metrics["log_register_seconds"]
    )
    log.info(
        "%s: test ROC-AUC %.4f, version %d, %s (%.1fs)",
        task.name,
        ev.metrics[PRIMARY_METRIC],
        result.version,
        "champion" if result.promoted else f"challenger ({result.promotion_reason})",
        result.seconds,
    )
    return result
