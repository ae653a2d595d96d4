"""`klantbeeld train clv` end to end on a small generated demo shop: labels from the later
period only, evaluation after training, BG/NBD + Gamma-Gamma in the same run, registry
aliases and the batch-score columns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.clv_labels import PURCHASES, REVENUE, purchase_labels
from klantbeeld.cli import app
from klantbeeld.settings import Settings, get_settings
from training.backtest import BacktestConfig
from training.clv_job import labelled_snapshot, train_clv

HORIZON = 30
CONFIG = BacktestConfig(n_train=2, num_threads=1)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("clv") / "shop"
    generate_demo_shop(out, n_customers=2000, seed=3, days=365)
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clv-home")


@pytest.fixture(scope="module")
def cli_env(home: Path) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("KLANTBEELD_HOME", str(home))
    get_settings.cache_clear()
    yield
    mp.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def first_run(shop_dir: Path, home: Path, cli_env: None) -> str:
    """The first version, trained through the CLI."""
    r = CliRunner().invoke(
        app, ["train", "clv", "--horizon-days", str(HORIZON), "--data", str(shop_dir)]
    )
    assert r.exit_code == 0, r.output
    return r.output


def _client(home: Path) -> mlflow.MlflowClient:
    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient()


def test_labels_are_the_orders_of_the_later_period(shop_dir: Path) -> None:
    from features.shop import open_shop

    shop = open_shop(shop_dir)
    t = datetime(2026, 9, 1)
    lab = purchase_labels(shop, t, HORIZON).set_index(c.CUSTOMER_ID)
    ev = pd.read_parquet(shop_dir / "events")
    customers = pd.read_parquet(shop_dir / "customers.parquet")
    known = customers.loc[customers[c.CREATED_AT] < t, c.CUSTOMER_ID]
    buys = ev[(ev[c.EVENT_TYPE] == c.PURCHASE) & (ev[c.TS] >= t)]
    buys = buys[(buys[c.TS] < t + timedelta(days=HORIZON)) & buys[c.CUSTOMER_ID].isin(known)]
    by = buys.groupby(c.CUSTOMER_ID)
    orders, value = by[c.ORDER_ID].nunique(), by[c.VALUE].sum()
    assert orders.sum() > 100
    np.testing.assert_array_equal(lab.loc[orders.index, PURCHASES], orders.to_numpy())
    np.testing.assert_allclose(lab.loc[value.index, REVENUE], value.to_numpy(), atol=0.01)
    others = lab.index.difference(orders.index)
    assert (lab.loc[others, PURCHASES] == 0).all() and (lab.loc[others, REVENUE] == 0).all()
    assert sorted(lab.index) == sorted(known)


def _truncated(shop_dir: Path, t: datetime) -> Path:
    """A copy of the shop without the events at or after ``t``."""
    cut = shop_dir.parent / f"cut-{t:%Y%m%d}"
    if not cut.exists():
        cut.mkdir()
        for name in ("customers.parquet", "items.parquet", "sends.parquet"):
            (cut / name).write_bytes((shop_dir / name).read_bytes())
        ev = pd.read_parquet(shop_dir / "events")
        ev[ev[c.TS] < t].to_parquet(cut / "events.parquet")
    return cut


def test_features_do_not_see_the_label_window(shop_dir: Path) -> None:
    from features.shop import open_shop

    t = datetime(2026, 9, 1)
    full = labelled_snapshot(open_shop(shop_dir), t, HORIZON)
    assert (full["orders_total"] >= 1).all()
    # the same snapshot on a shop that has no events at or after T
    before = labelled_snapshot(open_shop(_truncated(shop_dir, t)), t, HORIZON)
    feats = [col for col in full.columns if col not in (PURCHASES, REVENUE)]
    pd.testing.assert_frame_equal(full[feats], before[feats])
    assert full[PURCHASES].sum() > 0 and before[PURCHASES].sum() == 0


def test_cli_trains_and_registers_with_the_baseline_in_the_same_run(
    first_run: str, home: Path
) -> None:
    assert "clv v1 (champion; no champion yet)" in first_run
    assert "test_mae_clv_eur=" in first_run and "baseline_bgnbd_gg_mae_clv_eur=" in first_run
    client = _client(home)
    mv = client.get_model_version_by_alias("klantbeeld-clv", "champion")
    run = client.get_run(str(mv.run_id))
    m, p = run.data.metrics, run.data.params
    # evaluation strictly after training: every training label window ends by the
    # validation cutoff, whose window ends by the test cutoff
    train = [datetime.fromisoformat(d) for d in p["train_cutoffs"].split(",")]
    valid = datetime.fromisoformat(p["valid_cutoff"])
    test = datetime.fromisoformat(p["test_cutoff"])
    h = timedelta(days=int(p["horizon_days"]))
    assert int(p["horizon_days"]) == HORIZON
    assert all(t + h <= valid for t in train) and valid + h <= test
    assert run.data.tags["test_period"] == f"{test:%Y-%m-%d}/{test + h:%Y-%m-%d}"
    # model and baseline measured on the same rows of the test period
    assert m["test_customers"] == m["baseline_bgnbd_gg_customers"] > 500
    assert m["test_actual_purchases"] == m["baseline_bgnbd_gg_actual_purchases"] > 100
    for prefix in ("test", "baseline_bgnbd_gg"):
        assert 0.5 < m[f"{prefix}_roc_auc_any_purchase"] < 1.0
        assert 0.5 < m[f"{prefix}_purchases_ratio"] < 1.5
        assert m[f"{prefix}_mae_clv_eur"] > 0
    assert 0.5 < m["oracle_roc_auc_any_purchase"] <= 1.0
    assert m["baseline_gamma_gamma_q"] > 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/deciles_test.csv" in artifacts
    manifest = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/feature_manifest.json")
    assert {f["name"] for f in manifest["features"]} >= {"orders_total", "repl_due_90d"}


def test_second_version_is_challenger_on_a_tie(first_run: str, shop_dir: Path, home: Path):
    settings = Settings(home=home, seed=42)
    # the CLI run used the default config; the same config and seed give the same model
    r = train_clv(settings, shop_dir, horizon_days=HORIZON)
    assert r.version == 2 and not r.promoted
    assert "does not beat champion" in r.promotion_reason
    client = _client(home)
    assert int(client.get_model_version_by_alias("klantbeeld-clv", "challenger").version) == 2
    assert int(client.get_model_version_by_alias("klantbeeld-clv", "champion").version) == 1


def test_batch_scores_have_the_clv_columns(first_run: str, shop_dir: Path, home: Path) -> None:
    from features.shop import open_shop
    from features.snapshot import build_snapshot
    from models.clv import CLV, EXPECTED_PURCHASES, CLVModel
    from models.clv_pyfunc import unwrap_clv_model
    from models.inputs import model_inputs
    from training.batch_score import score_customers

    settings = Settings(home=home, seed=42)
    as_of = datetime(2026, 11, 1)
    path = score_customers(settings, as_of, data=shop_dir, out=home / "scores.parquet")
    scores = pq.read_table(path).to_pandas().set_index(c.CUSTOMER_ID)
    col_n, col_v = f"expected_purchases_{HORIZON}d", f"clv_{HORIZON}d"
    assert (scores["clv_model_version"] == 1).all()
    inputs = model_inputs(build_snapshot(open_shop(shop_dir), as_of))
    model = unwrap_clv_model(mlflow.pyfunc.load_model("models:/klantbeeld-clv/1"))
    assert isinstance(model, CLVModel)
    expected = model.predict_frame(inputs).set_index(inputs[c.CUSTOMER_ID].to_numpy())
    np.testing.assert_allclose(scores.loc[expected.index, col_n], expected[EXPECTED_PURCHASES])
    np.testing.assert_allclose(scores.loc[expected.index, col_v], expected[CLV])
    buyers = inputs.set_index(c.CUSTOMER_ID)["orders_total"] >= 1
    assert scores.loc[buyers[~buyers].index, col_v].isna().all()
    assert (scores.loc[buyers[buyers].index, col_v] > 0).all()


def test_horizon_option_is_refused_for_other_models(cli_env: None) -> None:
    r = CliRunner().invoke(app, ["train", "churn", "--horizon-days", "30"])
    assert r.exit_code == 2 and "applies to clv only" in r.output


def test_champion_is_compared_on_a_later_test_period(
    first_run: str, shop_dir: Path, home: Path
) -> None:
    """A shop that ends 14 days earlier has another test period: the champion (trained on
    the full shop, so it saw that period's labels; only the comparison is checked here)
    is scored on the new run's test rows."""
    from features.shop import open_shop
    from training.scoring_job import data_range

    _, end = data_range(open_shop(shop_dir))
    short = _truncated(shop_dir, end - timedelta(days=14))
    r = train_clv(Settings(home=home, seed=42), short, horizon_days=HORIZON)
    run = _client(home).get_run(r.run_id)
    assert run.data.tags["champion_compared_version"] == "1"
    champ = run.data.metrics["champion_test_mae_clv_eur"]
    assert champ > 0 and champ != r.metrics["test_mae_clv_eur"]
    assert r.promoted == (r.metrics["test_mae_clv_eur"] < champ)


def test_a_shop_without_prices_gets_a_clear_message(shop_dir: Path, home: Path) -> None:
    from klantbeeld.errors import KlantbeeldError

    free = shop_dir.parent / "no-prices"
    if not free.exists():
        free.mkdir()
        for name in ("customers.parquet", "items.parquet", "sends.parquet"):
            (free / name).write_bytes((shop_dir / name).read_bytes())
        pd.read_parquet(shop_dir / "events").drop(columns=[c.VALUE]).to_parquet(
            free / "events.parquet"
        )
    with pytest.raises(KlantbeeldError, match="CLV needs order values"):
        train_clv(Settings(home=home / "no-prices"), free, horizon_days=HORIZON, config=CONFIG)
