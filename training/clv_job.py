"""Training job of the expected-purchases / CLV model: backtest, fit, evaluate, log, register.

One MLflow run in experiment ``klantbeeld-clv`` for a horizon of H days:

1. cutoffs from :func:`training.backtest.plan_backtest` with horizon H (training cutoffs
   < validation cutoff < test cutoff, label windows never overlapping); shops above
   ``BacktestConfig.max_customers`` customers are read through the seeded customer sample
   of :func:`training.sampling.prepare_shop`, like the binary scores;
2. per cutoff T the point-in-time snapshot (only events before T,
   :func:`models.inputs.model_inputs`) of the customers with an order before T, joined to
   their orders and revenue in ``[T, T + H)`` (:func:`features.clv_labels.purchase_labels`);
3. :class:`models.clv.CLVModel` (LightGBM Poisson count + Gamma spend) fitted on the
   stacked training cutoffs, early-stopped on the validation cutoff (then refitted on both);
4. on the test cutoff, in the same run, the baseline :class:`models.clv.BGNBDGammaGamma`
   fitted on the test snapshot's order history (everything known at T, no labels), and on
   the demo shop the oracle's P(any purchase) for the ROC-AUC;
5. params, metrics, plots and the pyfunc model are logged; the model is registered as
   ``challenger`` and promoted to ``champion`` when its ``test_mae_clv_eur`` is lower
   than the champion's on the same test period (:mod:`training.registry`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from features.clv_labels import PURCHASES, REVENUE, purchase_labels
from klantbeeld.errors import KlantbeeldError
from klantbeeld.settings import Settings
from models.clv import CLV, EXPECTED_PURCHASES, EXPECTED_SPEND, BGNBDGammaGamma, CLVModel
from models.inputs import model_inputs
from training.backtest import BacktestConfig, BacktestPlan, plan_backtest
from training.clv_metrics import clv_report, decile_table
from training.result import TrainingResult

log = logging.getLogger(__name__)

MODEL = "clv"
PRIMARY_METRIC = "test_mae_clv_eur"
MIN_BUYERS = 20


@dataclass(frozen=True)
class CLVFrames:
    """Labelled population rows at every cutoff of a plan.

    Every frame has ``customer_id``, the feature columns, ``purchases`` (orders in the
    horizon) and ``revenue`` (EUR); ``train`` stacks the training cutoffs (column
    ``cutoff``).
    """

    plan: BacktestPlan
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    seconds: float
    manifest: list[Any]


def labelled_snapshot(shop: Any, as_of: datetime, horizon_days: int) -> pd.DataFrame:
    """Model inputs at ``as_of`` of the customers with an order before it, with labels.

    Parameters
    ----------
    shop : features.shop.Shop
        Opened shop.
    as_of : datetime
        Cutoff T; features read events before T, labels events in ``[T, T + H)``.
    horizon_days : int
        H (days).

    Returns
    -------
    pandas.DataFrame
        :func:`models.inputs.model_inputs` rows with ``orders_total >= 1``, plus
        ``purchases`` (count) and ``revenue`` (EUR).
    """
    return _labelled(shop, as_of, horizon_days)[0]


def _labelled(shop: Any, as_of: datetime, horizon_days: int) -> tuple[pd.DataFrame, list[Any]]:
    """:func:`labelled_snapshot` and the feature manifest of its columns."""
    from models.clv import in_population
    from models.inputs import replenishment_manifest
    from training.frames import default_snapshot

    snap = default_snapshot(shop, as_of)
    X = model_inputs(snap)
    X = X[in_population(X)]
    lab = purchase_labels(shop, as_of, horizon_days)
    out = X.merge(lab, on=c.CUSTOMER_ID, how="left", validate="one_to_one")
    missing = int(out[PURCHASES].isna().sum())
    if missing:
        raise KlantbeeldError(f"clv at {as_of:%Y-%m-%d}: {missing} snapshot rows have no label row")
    return out.reset_index(drop=True), [*snap.manifest, *replenishment_manifest()]


def assemble(shop: Any, plan: BacktestPlan) -> CLVFrames:
    """Labelled snapshots at every cutoff of ``plan``; raises when a period is too thin."""
    t0 = time.perf_counter()
    h = plan.horizon_days
    parts = [labelled_snapshot(shop, t, h).assign(cutoff=pd.Timestamp(t)) for t in plan.train]
    train = pd.concat(parts, ignore_index=True)
    valid = labelled_snapshot(shop, plan.valid, h)
    test, manifest = _labelled(shop, plan.test, h)
    for name, df in (("train", train), ("valid", valid), ("test", test)):
        buyers = int((df[PURCHASES] > 0).sum())
        if buyers < MIN_BUYERS or buyers == len(df):
            raise KlantbeeldError(
                f"clv: the {name} period has {len(df)} customers with orders before its "
                f"cutoff and {buyers} of them ordered in the next {h} days; need at least "
                f"{MIN_BUYERS} who did and some who did not (data too small or too short)"
            )
        paid = int((df[REVENUE] > 0).sum())
        if paid < MIN_BUYERS:
            raise KlantbeeldError(
                f"clv: only {paid} customers of the {name} period have orders with a positive "
                f"value in the next {h} days; CLV needs order values (events.value on "
                "purchases, EUR); without them the churn, conversion and repurchase models "
                "still train"
            )
    secs = time.perf_counter() - t0
    log.info(
        "clv rows: train %d, valid %d, test %d (%.1fs)", len(train), len(valid), len(test), secs
    )
    return CLVFrames(plan, train, valid, test, secs, manifest)


def fit_model(frames: CLVFrames, seed: int, num_threads: int) -> CLVModel:
    """Fit :class:`CLVModel` on the training rows, early-stopped on the validation rows."""
    drop = [c.CUSTOMER_ID, PURCHASES, REVENUE, "cutoff"]
    model = CLVModel(frames.plan.horizon_days, random_state=seed, num_threads=num_threads)
    return model.fit(
        frames.train.drop(columns=drop),
        frames.train[PURCHASES].to_numpy(),
        frames.train[REVENUE].to_numpy(),
        frames.valid.drop(columns=[c.CUSTOMER_ID, PURCHASES, REVENUE]),
        frames.valid[PURCHASES].to_numpy(),
        frames.valid[REVENUE].to_numpy(),
    )


def evaluate(
    predictions: dict[str, pd.DataFrame], test: pd.DataFrame
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics of every prediction frame on the test rows, named ``test_*`` for
    ``"model"`` and ``baseline_<name>_*`` otherwise; plus their decile tables."""
    y, r = test[PURCHASES].to_numpy(), test[REVENUE].to_numpy()
    metrics: dict[str, float] = {}
    tables = []
    for name, pred in predictions.items():
        report = clv_report(pred[EXPECTED_PURCHASES], pred[EXPECTED_SPEND], y, r)
        prefix = "test" if name == "model" else f"baseline_{name}"
        metrics.update({f"{prefix}_{k}": v for k, v in report.items()})
        for target, actual in ((EXPECTED_PURCHASES, y), (CLV, r)):
            t = decile_table(pred[target].to_numpy(), actual)
            tables.append(t.assign(model=name, target=target))
    return metrics, pd.concat(tables, ignore_index=True)


def _oracle_auc(data: Path, frames: CLVFrames, shop: Any, sampled: bool) -> dict[str, float]:
    """On the demo shop: ROC-AUC of the true P(any purchase in the horizon) on the test rows."""
    from features.demo_shop import is_demo_shop, oracle_purchase_probability
    from training.metrics import roc_auc

    if not is_demo_shop(data):
        return {}
    test = frames.test
    ids = test[c.CUSTOMER_ID].astype(str).tolist()
    events = None
    if sampled:
        ev = shop.events
        buys = ev.filter(ev[c.EVENT_TYPE] == c.PURCHASE)
        events = buys.select(c.CUSTOMER_ID, c.ITEM_ID, c.TS, c.EVENT_TYPE).to_pyarrow()
    o = oracle_purchase_probability(
        data, frames.plan.test, frames.plan.horizon_days, customer_ids=ids, events=events
    )
    p = test[[c.CUSTOMER_ID]].merge(o, on=c.CUSTOMER_ID, how="left")["p_purchase"].to_numpy()
    ok = np.isfinite(p)
    y = (test[PURCHASES].to_numpy() > 0).astype(np.float64)
    if not ok.any() or y[ok].min() == y[ok].max():
        return {}
    return {"oracle_roc_auc_any_purchase": roc_auc(y[ok], p[ok]), "oracle_coverage": ok.mean()}


def _plot_deciles(tables: pd.DataFrame, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, (target, unit) in zip(
        axes, ((EXPECTED_PURCHASES, "orders"), (CLV, "EUR")), strict=True
    ):
        part = tables[tables["target"] == target]
        for name, t in part.groupby("model", sort=False):
            ax.plot(t["bin"], t["predicted_mean"], "--o", ms=3, label=f"{name} predicted")
            ax.plot(t["bin"], t["actual_mean"], "-", lw=1, label=f"{name} actual")
        ax.set(xlabel="decile of prediction (10 = highest)", ylabel=f"mean per customer ({unit})")
        ax.set_title(f"{target}: predicted vs actual (test period)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _champion_scorer(frames: CLVFrames) -> Callable[[Any], float | None]:
    """``score_champion`` of :func:`training.log_run.log_training_run`: the champion's
    ``mae_clv_eur`` on this run's test rows. A champion of another horizon is not compared,
    so it stays champion unless forced."""

    def score(champion: Any) -> float | None:
        horizon = champion.run.data.params.get("horizon_days")
        if horizon != str(frames.plan.horizon_days):
            log.warning(
                "clv champion v%s predicts another horizon (%s days); not compared (use --force)",
                champion.version,
                horizon,
            )
            return None
        pred = champion.load().predict(frames.test)
        report = clv_report(
            pred[EXPECTED_PURCHASES],
            pred[EXPECTED_SPEND],
            frames.test[PURCHASES].to_numpy(),
            frames.test[REVENUE].to_numpy(),
        )
        return float(report["mae_clv_eur"])

    return score


def train_clv(
    settings: Settings,
    data: Path | None = None,
    *,
    horizon_days: int | None = None,
    force: bool = False,
    config: BacktestConfig | None = None,
) -> TrainingResult:
    """Backtest, fit, evaluate against BG/NBD + Gamma-Gamma, log, register and maybe promote.

    Parameters
    ----------
    settings : Settings
        Seed, threads, the MLflow store and the default horizon ``clv_horizon_days``.
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir``.
    horizon_days : int, optional
        H in days (overrides ``settings.clv_horizon_days``).
    force : bool
        Make the new version champion regardless of metrics.
    config : BacktestConfig, optional
        Cutoff count and spacing, customer cap.

    Returns
    -------
    TrainingResult
        Metrics include ``test_*`` (LightGBM), ``baseline_bgnbd_gg_*`` (BG/NBD +
        Gamma-Gamma) and, on the demo shop, ``oracle_roc_auc_any_purchase``.
    """
    import mlflow

    from models.clv_pyfunc import log_clv_model
    from training import plots
    from training.log_run import log_training_run
    from training.requirements import require, too_short
    from training.sampling import prepare_shop

    t0 = time.perf_counter()
    config = config or BacktestConfig()
    horizon = int(horizon_days or settings.clv_horizon_days)
    if horizon < 1:
        raise ValueError(f"horizon_days must be >= 1, got {horizon}")
    data = Path(data) if data is not None else settings.resolved_data_dir
    prepared = prepare_shop(data, settings, config)
    if prepared.profile is not None:
        require(MODEL, prepared.profile, str(data))
    start, end = prepared.data_range
    try:
        plan = plan_backtest(end, horizon, config, data_start=start)
    except ValueError as exc:  # data too short for three horizons: say so, no traceback
        raise too_short(MODEL, exc, str(data)) from None
    log.info("clv backtest plan: %s", plan.as_params())
    shop = prepared.sample.shop
    frames = assemble(shop, plan)

    t_fit = time.perf_counter()
    model = fit_model(frames, settings.seed, config.num_threads)
    fit_seconds = time.perf_counter() - t_fit
    X_test = frames.test.drop(columns=[PURCHASES, REVENUE])
    baseline = BGNBDGammaGamma(horizon).fit(X_test)
    predictions = {"model": model.predict_frame(X_test), "bgnbd_gg": baseline.predict_frame(X_test)}
    metrics, deciles = evaluate(predictions, frames.test)
    metrics.update(_oracle_auc(data, frames, shop, prepared.sample.sampled))
    metrics.update(
        {
            "train_rows": float(len(frames.train)),
            "valid_rows": float(len(frames.valid)),
            "fit_seconds": fit_seconds,
            "snapshot_seconds": frames.seconds,
            **{f"best_iteration_{k}": float(v) for k, v in model.best_iterations_.items()},
            **{f"baseline_{k}": v for k, v in baseline.params().items()},
        }
    )

    params = {
        **plan.as_params(),
        "data": str(data.resolve()),
        "seed": settings.seed,
        "n_features": len(model.feature_names_),
        "customers_total": prepared.sample.customers_total,
        "customers_sampled": prepared.sample.customers_sampled,
        "spend_of_baseline": "Gamma-Gamma on the mean of all orders before T",
        **{f"lgb_{k}": v for k, v in model.lgb_params("poisson").items() if k != "objective"},
    }

    def log_artifacts(out: Path) -> None:
        deciles.to_csv(out / "deciles_test.csv", index=False)
        model.feature_importance().to_csv(out / "feature_importance.csv")
        for f in ("deciles_test.csv", "feature_importance.csv"):
            mlflow.log_artifact(str(out / f), artifact_path="evaluation")
        gain = model.feature_importance()
        for path in (
            _plot_deciles(deciles, out / "deciles.png"),
            plots.feature_importance(gain["count"], out / "importance_count.png", "clv count"),
            plots.feature_importance(gain["spend"], out / "importance_spend.png", "clv spend"),
        ):
            mlflow.log_artifact(str(path), "plots")
        used = set(model.feature_names_)
        specs = [dataclasses.asdict(f) for f in frames.manifest if f.name in used]
        mlflow.log_dict({"model": MODEL, "features": specs}, "feature_manifest.json")

    result = log_training_run(
        MODEL,
        settings,
        test_start=plan.test,
        test_end=plan.test_end,
        params=params,
        metrics=metrics,
        log_model=lambda name: log_clv_model(model, X_test.head(5), name=name),
        primary_metric=PRIMARY_METRIC,
        higher_is_better=False,
        force=force,
        started=t0,
        run_name=f"{MODEL}-{horizon}d-{plan.test:%Y-%m-%d}",
        description=(
            f"clv: expected orders and revenue (EUR) in the {horizon} days after T, customers "
            "with an order before T; LightGBM Poisson x Gamma vs BG/NBD x Gamma-Gamma"
        ),
        log_artifacts=log_artifacts,
        score_champion=_champion_scorer(frames),
        as_of=plan.test,
        n_train=len(frames.train),
        n_test=len(frames.test),
        cutoffs=plan.as_params(),
    )
    log.info(
        "clv (%dd): MAE CLV %.2f EUR vs BG/NBD+GG %.2f; version %d, %s (%.1fs)",
        horizon,
        metrics[PRIMARY_METRIC],
        metrics["baseline_bgnbd_gg_mae_clv_eur"],
        result.version,
        result.promotion_reason,
        result.seconds,
    )
    return result
