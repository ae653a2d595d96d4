"""Training job of the repurchase-timing model: backtest, fit, evaluate, log, register.

One MLflow run in experiment ``klantbeeld-repurchase_timing``:

1. cutoffs from :func:`training.backtest.plan_backtest` with horizon ``7 * W`` days
   (training cutoffs < validation cutoff < test cutoff, label windows never overlapping);
2. per cutoff the pair features (:func:`models.repurchase_timing.pair_features`) and the
   week of the next purchase in the 7W days after T (:func:`features.labels.repurchase_labels`;
   0 = none; every window is complete, so those pairs are censored at W);
3. the hazard model is fitted on the training cutoffs with early stopping on the
   validation cutoff; the item-median and customer-mean interval baselines are fitted on
   the same training pairs; all are evaluated on the test cutoff (and, on the demo shop,
   the generator's true distribution as the oracle);
4. metrics, plots and the pyfunc model are logged; the model is registered as
   ``challenger`` and promoted to ``champion`` when its ``test_mae_days`` is lower than
   the champion's on the same test period.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features import contract as c
from models.repurchase_timing import (
    IntervalBaseline,
    RepurchaseTimingModel,
    cumulative_at_days,
    expected_days,
    pair_features,
    pair_key,
    restricted_mean_days,
    week_columns,
)
from training.result import TrainingResult

log = logging.getLogger(__name__)

MODEL = "repurchase_timing"
PRIMARY_METRIC = "test_mae_days"
CALIBRATION_WEEKS = (4, 12)


# --------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------
def _labels(shop: Any, as_of: datetime, weeks: int, level: str) -> pd.DataFrame:
    """``customer_id, <key>, days_to_next, week`` of the first purchase in the W weeks after T."""
    from features.labels import repurchase_labels

    lab = repurchase_labels(
        shop, as_of, weeks=weeks, level="item" if level == "item" else "category"
    )
    return lab[[c.CUSTOMER_ID, pair_key(level), "days_to_next", "week"]]


def labelled_pairs(shop: Any, as_of: datetime, weeks: int, level: str) -> pd.DataFrame:
    """Pair features at ``as_of`` joined with the week of the next purchase after it.

    Returns
    -------
    DataFrame
        :func:`models.repurchase_timing.pair_features` columns plus ``days_to_next``
        (days, NaN when none within ``7 * weeks`` days) and ``event_week`` (1..W, 0 = none).
    """
    from features.snapshot import build_snapshot

    snap = build_snapshot(shop, as_of)
    X = pair_features(snap, level)
    key = pair_key(level)
    lab = _labels(shop, as_of, weeks, level)
    out = X.merge(lab, on=[c.CUSTOMER_ID, key], how="left", validate="one_to_one")
    hit = out["days_to_next"].notna() & (out["days_to_next"] <= 7 * weeks)
    out["days_to_next"] = out["days_to_next"].where(hit)
    out["event_week"] = np.where(hit, out["week"].fillna(0), 0).astype(np.int64)
    return out.drop(columns="week")


# --------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------
def concordance_index(
    time_: np.ndarray, observed: np.ndarray, predicted: np.ndarray, *, block: int = 2048
) -> float:
    """Harrell's C: share of comparable pairs whose predicted times are in the right order.

    A pair (i, j) is comparable when i's event is observed and ``time_i < time_j``;
    it is concordant when ``predicted_i < predicted_j`` (ties count 1/2).

    Parameters
    ----------
    time_ : ndarray
        Observed days to event, or the censoring time.
    observed : ndarray of bool
        Whether the event was seen.
    predicted : ndarray
        Predicted time to event (lower = sooner).

    Returns
    -------
    float
        In [0, 1]; NaN when no pair is comparable.
    """
    t = np.asarray(time_, dtype=np.float64)
    o = np.asarray(observed, dtype=bool)
    p = np.asarray(predicted, dtype=np.float64)
    order = np.argsort(t, kind="stable")
    t, o, p = t[order], o[order], p[order]
    conc = 0.0
    total = 0.0
    events = np.flatnonzero(o)
    for start in range(0, events.size, block):
        idx = events[start : start + block]
        later = t[None, :] > t[idx, None]
        pi = p[idx, None]
        conc += float(((p[None, :] > pi) & later).sum() + 0.5 * ((p[None, :] == pi) & later).sum())
        total += float(later.sum())
    return conc / total if total else float("nan")


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def evaluate_distribution(
    dist: np.ndarray,
    event_week: np.ndarray,
    days_to_next: np.ndarray,
    *,
    cindex_sample: int = 20_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Quality of weekly distributions against what happened after T.

    Parameters
    ----------
    dist : ndarray of shape (n, W + 1)
        Predicted ``p_week_1..p_week_W, p_none``.
    event_week : ndarray of int, shape (n,)
        Observed week of the next purchase, 0 = none within W weeks.
    days_to_next : ndarray of float, shape (n,)
        Observed days to the next purchase (NaN when none within the horizon).
    cindex_sample : int
        Pairs drawn (seeded) for the concordance index, which is quadratic.
    seed : int
        Seed of that draw.

    Returns
    -------
    dict
        ``weekly_auc`` (list, NaN where a week has one class), ``weekly_auc_mean``,
        ``cindex`` (restricted mean time within the horizon vs observed time, censored at
        7W days), ``mae_days`` (expected date = median given a purchase within the
        horizon, pairs that repurchased), ``mae_days_unconditional`` (plain median),
        ``calib_<w>w_pred``/``_obs``/``_ece`` (cumulative probability by week w: mean
        predicted, observed rate, and decile-weighted absolute gap).
    """
    weeks = dist.shape[1] - 1
    ev = np.asarray(event_week)
    days = np.asarray(days_to_next, dtype=np.float64)
    out: dict[str, Any] = {}
    aucs = [_auc((ev == w).astype(int), dist[:, w - 1]) for w in range(1, weeks + 1)]
    out["weekly_auc"] = aucs
    out["weekly_auc_mean"] = float(np.nanmean(aucs))
    hit = ev > 0
    out["mae_days"] = float(np.mean(np.abs(expected_days(dist)[hit] - days[hit])))
    out["mae_days_unconditional"] = float(
        np.mean(np.abs(expected_days(dist, conditional=False)[hit] - days[hit]))
    )
    rng = np.random.default_rng(seed)
    idx = np.arange(ev.size)
    if ev.size > cindex_sample:
        idx = np.sort(rng.choice(ev.size, cindex_sample, replace=False))
    t_obs = np.where(hit, days, 7.0 * weeks)[idx]
    out["cindex"] = concordance_index(t_obs, hit[idx], restricted_mean_days(dist[idx]))
    for w in CALIBRATION_WEEKS:
        if w > weeks:
            continue
        pred = cumulative_at_days(dist, 7.0 * w)
        obs = (hit & (ev <= w)).astype(float)
        out[f"calib_{w}w_pred"] = float(pred.mean())
        out[f"calib_{w}w_obs"] = float(obs.mean())
        bins = np.minimum((pd.Series(pred).rank(pct=True, method="first") * 10).astype(int), 9)
        gap = pd.DataFrame({"b": bins, "p": pred, "o": obs}).groupby("b")[["p", "o"]].mean()
        sizes = np.bincount(bins, minlength=10)[gap.index]
        out[f"calib_{w}w_ece"] = float(np.average(np.abs(gap["p"] - gap["o"]), weights=sizes))
    return out


def _flat(prefix: str, ev: dict[str, Any]) -> dict[str, float]:
    out = {f"{prefix}_{k}": float(v) for k, v in ev.items() if k != "weekly_auc"}
    for w, a in enumerate(ev["weekly_auc"], start=1):
        if np.isfinite(a):
            out[f"{prefix}_auc_week_{w}"] = float(a)
    return out


# --------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------
def _plot_curve(curves: dict[str, np.ndarray], observed: np.ndarray, path: Path) -> None:
    from training.plots import figures

    plt = figures()

    weeks = np.arange(0, observed.size + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(weeks, np.r_[0, observed], "k-o", label="observed", lw=2)
    for name, curve in curves.items():
        ax.plot(weeks, np.r_[0, curve], "--", label=name)
    ax.set_xlabel("weeks after cutoff")
    ax.set_ylabel("cumulative share of pairs repurchased")
    ax.set_title("Predicted vs observed cumulative repurchase (test cutoff)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_mae_by_item(table: pd.DataFrame, path: Path) -> None:
    from training.plots import figures

    plt = figures()

    top = table.head(25).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 7))
    y = np.arange(len(top))
    ax.barh(y - 0.2, top["model_mae_days"], height=0.4, label="model")
    ax.barh(y + 0.2, top["item_median_mae_days"], height=0.4, label="item-median baseline")
    ax.set_yticks(y, top.index.astype(str))
    ax.set_xlabel("MAE of expected date (days), pairs that repurchased")
    ax.set_title("MAE by item (25 most repurchased on the test cutoff)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------------------
# Oracle
# --------------------------------------------------------------------------------------
def _oracle_distribution(
    data: Path, as_of: datetime, weeks: int, test: pd.DataFrame, key: str
) -> np.ndarray | None:
    """The generator's true weekly distribution for the test pairs, or None."""
    try:
        from features.demo_shop import (  # type: ignore[attr-defined]
            is_demo_shop,
            oracle_repurchase_distribution,
        )
    except ImportError:
        log.info("demo-shop oracle not available; oracle metrics skipped")
        return None
    if not is_demo_shop(data) or key != c.ITEM_ID:
        return None
    ora = oracle_repurchase_distribution(data, as_of, weeks=weeks)
    cols = [*week_columns(weeks), "p_none"]
    merged = test[[c.CUSTOMER_ID, key]].merge(ora, on=[c.CUSTOMER_ID, key], how="left")
    missing = int(merged[cols[0]].isna().sum())
    if missing:
        log.warning("oracle has no distribution for %d test pairs; they get p_none = 1", missing)
        merged.loc[merged[cols[0]].isna(), cols] = [0.0] * weeks + [1.0]
    return merged[cols].to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------
def _sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(df) <= n:
        return df.reset_index(drop=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(df), n, replace=False))
    return df.iloc[idx].reset_index(drop=True)


def train_repurchase_timing(
    settings: Any,
    data: Path | None = None,
    *,
    level: str | None = None,
    register: bool = True,
    force_promote: bool = False,
    max_train_pairs: int = 400_000,
    max_eval_pairs: int = 200_000,
    n_train_cutoffs: int = 4,
    model_params: dict[str, Any] | None = None,
) -> TrainingResult:
    """Backtest, fit, evaluate, log and register the repurchase-timing model.

    Parameters
    ----------
    settings : klantbeeld.settings.Settings
        Horizon (``repurchase_weeks``), level (``repurchase_level``), seed, threads,
        MLflow store.
    data : Path, optional
        Shop folder or DuckDB file; default ``settings.resolved_data_dir``.
    level : {"item", "category"}, optional
        Overrides ``settings.repurchase_level``.
    register : bool
        Register the logged model as ``challenger`` and apply the promotion rule.
    force_promote : bool
        Make it ``champion`` regardless of metrics.
    max_train_pairs, max_eval_pairs : int
        Seeded samples of pairs above these sizes (training stack; test and validation).
    n_train_cutoffs : int
        Training cutoffs (28 days apart) stacked before the validation cutoff.
    model_params : dict, optional
        Extra :class:`RepurchaseTimingModel` arguments.

    Returns
    -------
    TrainingResult
        ``level``, ``n_train`` / ``n_test`` (pairs) and ``cutoffs`` filled in; ``version``
        None when ``register=False``.
    """
    import mlflow

    from features.shop import open_shop
    from models.repurchase_pyfunc import log_repurchase_model
    from training.backtest import BacktestConfig, plan_backtest
    from training.log_run import log_training_run
    from training.requirements import profile_shop, require, too_short
    from training.window import training_window

    t_start = time.perf_counter()
    weeks = int(settings.repurchase_weeks)
    level = str(level or getattr(settings, "repurchase_level", "item"))
    key = pair_key(level)
    seed = int(settings.seed)
    data = Path(data) if data is not None else Path(settings.resolved_data_dir)
    shop = open_shop(data, lenient=settings.lenient, threads=settings.threads)
    shop, (start, end) = training_window(shop, settings)
    require(MODEL, profile_shop(shop), str(data))
    try:
        plan = plan_backtest(
            end,
            7 * weeks,
            BacktestConfig(n_train=n_train_cutoffs, step_days=28, min_history_days=56),
            data_start=start,
        )
    except ValueError as exc:
        raise too_short(MODEL, exc, str(data)) from None
    log.info("repurchase backtest: %s", plan.as_params())

    frames = []
    for cut in plan.train:
        f = labelled_pairs(shop, cut, weeks, level)
        frames.append(f)
        log.info("train cutoff %s: %d pairs", cut.date(), len(f))
    train = _sample(pd.concat(frames, ignore_index=True), max_train_pairs, seed)
    valid = _sample(labelled_pairs(shop, plan.valid, weeks, level), max_eval_pairs, seed + 1)
    test_all = labelled_pairs(shop, plan.test, weeks, level)
    test = _sample(test_all, max_eval_pairs, seed + 2)

    ids = [c.CUSTOMER_ID, key, "days_to_next", "event_week"]
    X_train, X_valid, X_test = (f.drop(columns=ids) for f in (train, valid, test))
    params = {"random_state": seed, "n_jobs": settings.threads, "weeks": weeks}
    params.update(model_params or {})
    model = RepurchaseTimingModel(**params)
    t_fit = time.perf_counter()
    model.fit(
        X_train,
        train["event_week"].to_numpy(),
        eval_set=(X_valid, valid["event_week"].to_numpy(), None),
    )
    fit_seconds = time.perf_counter() - t_fit

    days_train = train["days_to_next"].to_numpy(dtype=np.float64)
    ev_test = test["event_week"].to_numpy()
    days_test = test["days_to_next"].to_numpy(dtype=np.float64)
    dists = {"model": model.predict_distribution(X_test)}
    for kind in ("item_median", "customer_mean"):
        base = IntervalBaseline(kind, weeks).fit(X_train, None, days_train)
        dists[kind] = base.predict_distribution(X_test)
    oracle = _oracle_distribution(data, plan.test, weeks, test, key)
    if oracle is not None:
        dists["oracle"] = oracle
    evals = {
        name: evaluate_distribution(d, ev_test, days_test, seed=seed) for name, d in dists.items()
    }

    m = evals["model"]
    metrics: dict[str, float] = {
        "test_mae_days": m["mae_days"],
        "test_cindex": m["cindex"],
        "test_weekly_auc_mean": m["weekly_auc_mean"],
        "baseline_item_median_mae_days": evals["item_median"]["mae_days"],
        "baseline_customer_mean_mae_days": evals["customer_mean"]["mae_days"],
        "baseline_item_median_cindex": evals["item_median"]["cindex"],
        "baseline_customer_mean_cindex": evals["customer_mean"]["cindex"],
        "baseline_item_median_weekly_auc_mean": evals["item_median"]["weekly_auc_mean"],
        "baseline_customer_mean_weekly_auc_mean": evals["customer_mean"]["weekly_auc_mean"],
    }
    metrics.update(_flat("test", m))
    metrics.update(_flat("baseline_item_median", evals["item_median"]))
    metrics.update(_flat("baseline_customer_mean", evals["customer_mean"]))
    wins = sum(
        a > max(b, cc)
        for a, b, cc in zip(
            m["weekly_auc"],
            evals["item_median"]["weekly_auc"],
            evals["customer_mean"]["weekly_auc"],
            strict=True,
        )
        if np.isfinite(a)
    )
    metrics["test_weeks_auc_beats_both_baselines"] = float(wins)
    if "oracle" in evals:
        o = evals["oracle"]
        metrics.update(_flat("oracle", o))
        metrics["oracle_mae_days"] = o["mae_days"]
        metrics["oracle_cindex"] = o["cindex"]
        metrics["oracle_weekly_auc_mean"] = o["weekly_auc_mean"]
    metrics["train_pairs"] = float(len(train))
    metrics["test_pairs"] = float(len(test))
    metrics["test_repurchase_rate"] = float((ev_test > 0).mean())
    metrics["fit_seconds"] = fit_seconds

    params = {
        **plan.as_params(),
        **{f"model_{k}": v for k, v in model.get_params().items()},
        "level": level,
        "weeks": weeks,
        "data": str(data),
        "n_features": len(model.feature_names_),
        "hazard_rows": model.n_hazard_rows_,
        "best_iteration": model.best_iteration_,
        "expected_date": "median given a purchase within the horizon",
    }

    def log_artifacts(tmpd: Path) -> None:
        observed = np.array([((ev_test > 0) & (ev_test <= w)).mean() for w in range(1, weeks + 1)])
        curves = {n: np.cumsum(d[:, :weeks], axis=1).mean(axis=0) for n, d in dists.items()}
        _plot_curve(curves, observed, tmpd / "cumulative_repurchase.png")
        hit = ev_test > 0
        per = pd.DataFrame(
            {
                "key": test[key].to_numpy()[hit],
                "model_mae_days": np.abs(expected_days(dists["model"])[hit] - days_test[hit]),
                "item_median_mae_days": np.abs(
                    expected_days(dists["item_median"])[hit] - days_test[hit]
                ),
            }
        )
        by_item = per.groupby("key").agg(
            n=("model_mae_days", "size"),
            model_mae_days=("model_mae_days", "mean"),
            item_median_mae_days=("item_median_mae_days", "mean"),
        )
        by_item = by_item.sort_values("n", ascending=False)
        _plot_mae_by_item(by_item, tmpd / "mae_by_item.png")
        by_item.to_csv(tmpd / "mae_by_item.csv")
        weekly = pd.DataFrame(
            {n: e["weekly_auc"] for n, e in evals.items()}, index=range(1, weeks + 1)
        )
        weekly.index.name = "week"
        weekly.to_csv(tmpd / "weekly_auc.csv")
        (tmpd / "features.json").write_text(json.dumps(model.feature_names_, indent=1))
        for name in (
            "cumulative_repurchase.png",
            "mae_by_item.png",
            "mae_by_item.csv",
            "weekly_auc.csv",
            "features.json",
        ):
            mlflow.log_artifact(str(tmpd / name), artifact_path="evaluation")
        try:
            from mlflow.data.pandas_dataset import from_pandas

            ds = from_pandas(
                test_all.head(1000), source=str(data), name=f"pairs@{plan.test.date()}"
            )
            mlflow.log_input(ds, context="test")
        except Exception as exc:  # the data description is informative only
            log.warning("could not log the input description: %s", exc)

    result = log_training_run(
        MODEL,
        settings,
        test_start=plan.test,
        test_end=plan.test_end,
        params=params,
        metrics=metrics,
        log_model=lambda name: log_repurchase_model(model, X_test.head(5), level, name=name),
        primary_metric=PRIMARY_METRIC,
        higher_is_better=False,
        force=force_promote,
        register=register,
        started=t_start,
        tags={"level": level},
        log_artifacts=log_artifacts,
        as_of=plan.test,
        n_train=len(train),
        n_test=len(test),
        cutoffs=plan.as_params(),
        level=level,
    )
    if register:
        log.info("repurchase_timing v%s: %s", result.version, result.promotion_reason)
    log.info(
        "repurchase_timing: MAE %.2f d (item-median %.2f, customer-mean %.2f%s), %.1fs",
        metrics["test_mae_days"],
        metrics["baseline_item_median_mae_days"],
        metrics["baseline_customer_mean_mae_days"],
        f", oracle {metrics['oracle_mae_days']:.2f}" if "oracle_mae_days" in metrics else "",
        result.seconds,
    )
    return result
