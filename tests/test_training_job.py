"""End to end on a small demo shop: backtest plan, oracle gap, baselines, calibration,
leakage checks, determinism, MLflow registry and batch scoring.

One shop and one MLflow store are shared by the module; snapshots are cached between the
jobs, so the file runs a handful of snapshot builds in total.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import contract as c
from klantbeeld.settings import Settings
from models.base import directory_hash
from training import metrics as M
from training.backtest import BacktestConfig, BacktestPlan, plan_backtest
from training.scoring_job import (
    CHURN,
    CONVERSION_INTENT,
    LABEL,
    PointInTimeError,
    assemble,
    check_point_in_time,
    data_range,
    default_snapshot,
    fit_evaluate,
    run_scoring_job,
)

N_CUSTOMERS = 6000
CONFIG = BacktestConfig(n_train=2, step_days=28, num_threads=1)


# ----------------------------------------------------------------------------- plans


def test_plan_windows_never_overlap() -> None:
    plan = plan_backtest(datetime(2026, 11, 1, 13, 5), 90, BacktestConfig(n_train=3))
    h = timedelta(days=90)
    assert plan.test == datetime(2026, 8, 3)
    assert plan.test_end == datetime(2026, 11, 1)
    assert plan.valid == plan.test - h
    assert plan.train == (
        plan.valid - h - timedelta(days=56),
        plan.valid - h - timedelta(days=28),
        plan.valid - h,
    )
    assert all(t + h <= plan.valid for t in plan.train)
    assert plan.valid + h <= plan.test
    assert plan.test_period == "2026-08-03/2026-11-01"


def test_overlapping_plan_is_refused() -> None:
    with pytest.raises(ValueError, match="reaches past the validation cutoff"):
        BacktestPlan((datetime(2026, 1, 1),), datetime(2026, 1, 5), datetime(2026, 1, 20), 7)
    with pytest.raises(ValueError, match="reaches past the test cutoff"):
        BacktestPlan((datetime(2026, 1, 1),), datetime(2026, 1, 8), datetime(2026, 1, 10), 7)


def test_short_data_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        plan_backtest(datetime(2026, 3, 1), 90, data_start=datetime(2026, 1, 1))


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(out, n_customers=N_CUSTOMERS, seed=7)
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), seed=42)


@pytest.fixture(scope="module")
def cache() -> dict:
    return {}


@pytest.fixture(scope="module")
def shop(shop_dir: Path):
    from features.shop import open_shop

    return open_shop(shop_dir)


@pytest.fixture(scope="module")
def plan(shop) -> BacktestPlan:
    start, end = data_range(shop)
    return plan_backtest(end, 90, CONFIG, data_start=start)


@pytest.fixture(scope="module")
def first(shop_dir: Path, settings: Settings, cache: dict):
    return run_scoring_job(CHURN, settings, shop_dir, config=CONFIG, cache=cache)


@pytest.fixture(scope="module")
def second(first, shop_dir: Path, settings: Settings, cache: dict):
    return run_scoring_job(CHURN, settings, shop_dir, config=CONFIG, cache=cache, pit_check=False)


@pytest.fixture(scope="module")
def conversion(shop_dir: Path, settings: Settings, cache: dict):
    return run_scoring_job(
        CONVERSION_INTENT, settings, shop_dir, config=CONFIG, cache=cache, pit_check=False
    )


@pytest.fixture(scope="module")
def frames(first, shop, plan, settings: Settings, cache: dict):
    return assemble(shop, CHURN, plan, settings, cache=cache)


# ----------------------------------------------------------------------------- quality


def _assert_close_to_oracle_and_beats_baselines(m: dict[str, float]) -> None:
    assert m["oracle_coverage"] == 1.0
    assert m["oracle_roc_auc"] - m["test_roc_auc"] < 0.05
    assert m["test_roc_auc"] > m["baseline_rfm_roc_auc"]
    assert m["test_roc_auc"] > m["baseline_logreg_roc_auc"]
    assert m["test_lift_at_10pct"] > 1.0


def test_close_to_oracle_and_beats_baselines(first) -> None:
    _assert_close_to_oracle_and_beats_baselines(first.metrics)


def test_conversion_intent_close_to_oracle_and_beats_baselines(conversion) -> None:
    m = conversion.metrics
    _assert_close_to_oracle_and_beats_baselines(m)
    # trimming the audience: keeping 95% of buyers needs well under the whole audience
    assert m["test_audience_share_keep_95pct"] < 0.9
    assert m["oracle_audience_share_keep_95pct"] <= m["test_audience_share_keep_95pct"] + 0.05


def test_threshold_curve_logged_and_chooser_matches_the_metrics(conversion, settings) -> None:
    from serving.targeting.curve_source import last_backtest_curve
    from serving.targeting.threshold import Goal, choose_threshold

    source = last_backtest_curve("conversion_intent", settings)
    assert source.run_id == conversion.run_id
    choice = choose_threshold(source.curve, Goal("keep_conversions", 0.95))
    m = conversion.metrics
    assert choice.audience_share == pytest.approx(m["test_audience_share_keep_95pct"], abs=1e-9)
    assert choice.population == m["test_n"]
    assert choice.oracle_audience_share == pytest.approx(
        m["oracle_audience_share_keep_95pct"], abs=0.01
    )
    assert choice.audience_share <= 1.2 * choice.oracle_audience_share


def test_calibrated_on_the_test_period(first) -> None:
    m = first.metrics
    # the overall rate is reproduced, and most deciles sit within 2 standard errors
    assert m["test_brier"] < m["baseline_rfm_brier"]
    assert m["test_calibration_deciles_within_2se"] >= 7
    # the same check on the true probabilities, for scale
    assert m["oracle_calibration_deciles_checked"] == m["test_calibration_deciles_checked"]
    # and the yardstick: what the 10% rule gives when labels follow the model's own scores
    expected = m["test_calibration_deciles_within_10pct_if_calibrated"]
    assert 0 < expected <= m["test_calibration_deciles_checked"]
    assert 0 <= m["test_calibration_all_deciles_pass_prob_if_calibrated"] <= 1


def test_seasonal_adjustment_measured_a_year_earlier(first, frames) -> None:
    from models.pyfunc import unwrap_scorer

    m = first.metrics
    # churn (90 days) is calibrated on the window before the test window: the shift between
    # the two seasons, measured 364 days earlier, is applied to the test scores...
    assert "seasonal_log_multiplier_test" in m
    assert m["test_calibration_deciles_checked_unadjusted"] == m["test_calibration_deciles_checked"]
    # ...and the shift to the season after the data end is stored with the model
    scorer = unwrap_scorer(mlflow.pyfunc.load_model(f"models:/klantbeeld-churn/{first.version}"))
    shift = scorer.seasonal_shift_
    assert shift.log_multiplier == m["seasonal_log_multiplier_deploy"]
    assert shift.target == (frames.plan.test_end - timedelta(days=364)).date().isoformat()
    assert shift.reference == (frames.plan.valid - timedelta(days=364)).date().isoformat()
    X, _ = frames.xy("test")
    np.testing.assert_allclose(scorer.predict_proba(X), shift.apply(scorer.predict_calibrated(X)))


def test_fixed_metric_names(first) -> None:
    names = {
        "test_roc_auc", "test_pr_auc", "test_brier", "test_log_loss", "test_lift_at_10pct",
        "baseline_rfm_roc_auc", "baseline_logreg_roc_auc", "oracle_roc_auc",
        "test_audience_share_keep_95pct", "oracle_audience_share_keep_95pct",
        "test_audience_share_keep_100pct", "oracle_audience_share_keep_100pct",
    }  # fmt: skip
    assert names <= set(first.metrics)
    run = mlflow.MlflowClient().get_run(first.run_id)
    assert names <= set(run.data.metrics)
    assert run.data.tags["test_period"] == first.test_period


# ----------------------------------------------------------------------------- leakage


def test_shuffled_training_labels_give_chance_auc(frames) -> None:
    # Both periods that fit the model (trees: train; early stopping and calibration: valid)
    # get permuted labels. A noise model is still a function of predictive features, so
    # its test AUC scatters around 0.5 (sd about 0.07 here): average five permutations
    # (sd about 0.03) and require each to stay far below the honest model's AUC.
    aucs = []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        shuffled = dataclasses.replace(
            frames,
            train=frames.train.assign(**{LABEL: rng.permutation(frames.train[LABEL])}),
            valid=frames.valid.assign(**{LABEL: rng.permutation(frames.valid[LABEL])}),
        )
        aucs.append(fit_evaluate(shuffled, CHURN, seed=42, config=CONFIG).metrics["test_roc_auc"])
    assert abs(np.mean(aucs) - 0.5) < 0.07
    honest = fit_evaluate(frames, CHURN, seed=42, config=CONFIG)
    assert honest.metrics["test_roc_auc"] > 0.7
    assert max(aucs) < honest.metrics["test_roc_auc"] - 0.1


def test_planted_post_cutoff_feature_is_caught(shop, plan) -> None:
    def leaky_snapshot(shop_, as_of):
        snap = default_snapshot(shop_, as_of)
        ev = shop_.events
        future = ev.filter(
            (ev[c.TS] >= as_of)
            & (ev[c.TS] < as_of + timedelta(days=7))
            & (ev[c.EVENT_TYPE] == c.PURCHASE)
        )
        n = future.group_by(c.CUSTOMER_ID).aggregate(purchases_next_7d=future.count()).to_pandas()
        cust = snap.customer.merge(n, on=c.CUSTOMER_ID, how="left").fillna({"purchases_next_7d": 0})
        return dataclasses.replace(snap, customer=cust)

    with pytest.raises(PointInTimeError, match=r"\['purchases_next_7d'\]"):
        check_point_in_time(shop, plan.train[-1], leaky_snapshot)


# ----------------------------------------------------------------------------- determinism


def _model_dir(run_id: str) -> Path:
    uri = f"runs:/{run_id}/model"
    return Path(mlflow.artifacts.download_artifacts(uri)) / "artifacts" / "scorer"


def test_same_data_and_seed_same_model_and_scores(first, second, frames) -> None:
    assert directory_hash(_model_dir(first.run_id)) == directory_hash(_model_dir(second.run_id))
    for k in ("test_roc_auc", "test_brier", "test_log_loss"):
        assert first.metrics[k] == second.metrics[k]
    X, _ = frames.xy("test")
    a = mlflow.pyfunc.load_model(f"models:/klantbeeld-churn/{first.version}").predict(X)
    b = mlflow.pyfunc.load_model(f"models:/klantbeeld-churn/{second.version}").predict(X)
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- registry


def test_registry_champion_and_challenger(first, second, shop_dir, settings, cache) -> None:
    client = mlflow.MlflowClient()
    assert (first.version, first.promoted, first.promotion_reason) == (1, True, "no champion yet")
    # same test period, equal metric: the tie keeps the champion
    assert (second.version, second.promoted) == (2, False)
    assert second.promotion_reason.startswith("does not beat champion")
    assert int(client.get_model_version_by_alias("klantbeeld-churn", "champion").version) == 1
    assert int(client.get_model_version_by_alias("klantbeeld-churn", "challenger").version) == 2
    forced = run_scoring_job(
        CHURN, settings, shop_dir, config=CONFIG, cache=cache, pit_check=False, force=True
    )
    assert (forced.version, forced.promoted, forced.promotion_reason) == (3, True, "forced")
    assert int(client.get_model_version_by_alias("klantbeeld-churn", "champion").version) == 3


def test_log_register_seconds_is_in_the_run(first) -> None:
    run = mlflow.MlflowClient().get_run(first.run_id)
    assert run.data.metrics["log_register_seconds"] == pytest.approx(
        first.metrics["log_register_seconds"]
    )
    assert 0.0 < first.metrics["log_register_seconds"] < first.seconds


def test_champion_loads_as_pyfunc_and_predicts(first, frames) -> None:
    model = mlflow.pyfunc.load_model("models:/klantbeeld-churn@champion")
    sig = model.metadata.get_input_schema().input_names()
    assert "recency_days" in sig
    X = frames.test.drop(columns=[LABEL, "cutoff"], errors="ignore")
    p = model.predict(X)  # the full snapshot frame: ids and categoricals are ignored
    assert p.shape == (len(X),)
    assert M.roc_auc(frames.test[LABEL], p) == pytest.approx(first.metrics["test_roc_auc"])


#: Run by a fresh ``python -I`` in an empty folder: the repository is not on sys.path and
#: the shared venv's editable-install finder for klantbeeld is switched off, so only the
#: code the model ships (``code_paths``) can provide ``models``/``features``/``klantbeeld``.
_FRESH_LOAD = """
import importlib, sys
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in repr(h)]
sys.path_importer_cache.clear()
for name in ("klantbeeld", "models", "features", "training", "serving"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"{name} is importable before the model is loaded")
import mlflow, numpy as np, pandas as pd
model = mlflow.pyfunc.load_model("models:/klantbeeld-churn@champion")
p = model.predict(pd.read_parquet(sys.argv[1]))
np.save(sys.argv[2], np.asarray(p, dtype=np.float64))
print("loaded from", sys.modules["models"].__file__)
"""


def test_champion_loads_and_predicts_without_the_repository(first, frames, tmp_path) -> None:
    import os
    import subprocess
    import sys

    X = frames.test.drop(columns=[LABEL, "cutoff"], errors="ignore").head(300)
    X.to_parquet(tmp_path / "x.parquet")
    here = mlflow.pyfunc.load_model("models:/klantbeeld-churn@champion").predict(X)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["MLFLOW_TRACKING_URI"] = env["MLFLOW_REGISTRY_URI"] = mlflow.get_tracking_uri()
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _FRESH_LOAD, str(tmp_path / "x.parquet"), "p.npy"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the model's own code folder, not this checkout
    shipped = proc.stdout.strip().rsplit(" ", 1)[-1]
    assert "/code/models/" in shipped and not shipped.startswith(str(Path.cwd()))
    np.testing.assert_array_equal(np.load(cwd / "p.npy"), here)


def test_batch_scores_every_customer(first, conversion, shop, shop_dir, settings, frames) -> None:
    from training.batch_score import score_customers

    as_of = frames.plan.test
    path = score_customers(settings, as_of, data=shop_dir, models=("conversion_intent", "churn"))
    table = pq.read_table(path).to_pandas()
    n = shop.customers.filter(shop.customers[c.CREATED_AT] < as_of).count().to_pyarrow().as_py()
    assert len(table) == n and table[c.CUSTOMER_ID].is_unique
    client = mlflow.MlflowClient()
    for model in ("conversion_intent", "churn"):
        champion = client.get_model_version_by_alias(f"klantbeeld-{model}", "champion")
        assert set(table[f"{model}_model_version"]) == {int(champion.version)}
        assert table[f"{model}_score"].between(0.0, 1.0).all()
    test = frames.test.set_index(c.CUSTOMER_ID)
    scored = table.set_index(c.CUSTOMER_ID).loc[test.index, "churn_score"]
    assert M.roc_auc(test[LABEL], scored) == pytest.approx(first.metrics["test_roc_auc"])
    from models.base import TOP_DOWN, TOP_UP
    from models.pyfunc import unwrap_scorer

    ups, downs = table["churn_top_up"], table["churn_top_down"]
    assert ups.map(len).max() == 3 and ups.map(len).between(0, 3).all()
    named = set(frames.features)
    assert all(set(u) <= named and not set(u) & set(d) for u, d in zip(ups, downs, strict=True))
    # the stored explanations are the champion's own, customer by customer
    champion = unwrap_scorer(mlflow.pyfunc.load_model("models:/klantbeeld-churn@champion"))
    rows = frames.test.head(200)
    want = champion.explain(rows[frames.features], k=3)
    stored = table.set_index(c.CUSTOMER_ID).loc[rows[c.CUSTOMER_ID]]
    assert [list(u) for u in stored["churn_top_up"]] == want[TOP_UP].tolist()
    assert [list(d) for d in stored["churn_top_down"]] == want[TOP_DOWN].tolist()
    assert path.name == f"customer_scores_as_of={as_of:%Y-%m-%d}.parquet"
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temp file
    assert pd.api.types.is_datetime64_any_dtype(table["as_of"])


def test_replenishment_features_by_hand() -> None:
    from models.inputs import replenishment_features

    ci = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["c1", "c1", "c2"],
            "item_id": ["a", "b", "a"],
            "purchases": [1, 3, 1],
            "days_since_last": [25.0, 40.0, 5.0],
            "own_cycle_days": [np.nan, 10.0, np.nan],
            "median_cycle_days": [30.0, 20.0, np.nan],
        }
    )
    r = replenishment_features(ci)
    assert r.loc["c1"].to_dict() == pytest.approx(
        {
            "repl_items": 2,
            "repl_purchases": 4,
            "repl_next_due_days": 5.0,
            "repl_overdue": 1,
            "repl_ratio_max": 25 / 30,
            "repl_due_7d": 1,
            "repl_due_30d": 1,
            "repl_due_90d": 1,
        }  # fmt: skip
    )
    c2 = r.loc["c2"]
    assert (c2.repl_items, c2.repl_overdue, c2.repl_due_90d) == (1, 0, 0)
    assert np.isnan(c2.repl_next_due_days) and np.isnan(c2.repl_ratio_max)
