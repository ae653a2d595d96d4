"""The CLV model family on generated data: BG/NBD and Gamma-Gamma parameter recovery,
closed forms checked by hand, metrics on a hand-worked fixture, and the LightGBM CLV
model's contract (population, determinism, save/load)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from klantbeeld.errors import KlantbeeldError
from models import bgnbd
from models import gamma_gamma as gg
from models.base import directory_hash
from models.clv import CLV, EXPECTED_PURCHASES, BGNBDGammaGamma, CLVModel, rfm_summaries
from training.clv_metrics import clv_report, decile_table

TRUE_BG = bgnbd.BGNBDParams(r=0.25, alpha=4.0, a=0.8, b=2.5)
TRUE_GG = gg.GammaGammaParams(p=6.0, q=4.0, gamma=15.0)


def _rel(fitted: float, true: float) -> float:
    return abs(fitted / true - 1)


def test_bgnbd_recovers_simulated_parameters() -> None:
    T = np.random.default_rng(1).uniform(26, 52, 20_000)
    x, t_x = bgnbd.simulate(TRUE_BG, T, seed=2)
    fit = bgnbd.fit(x, t_x, T)
    assert _rel(fit.r, TRUE_BG.r) < 0.08
    assert _rel(fit.alpha, TRUE_BG.alpha) < 0.08
    # a and b are weakly identified one by one; the mean dropout probability is sharp
    assert _rel(fit.a, TRUE_BG.a) < 0.25 and _rel(fit.b, TRUE_BG.b) < 0.25
    assert _rel(fit.a / (fit.a + fit.b), TRUE_BG.a / (TRUE_BG.a + TRUE_BG.b)) < 0.05


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    x = 1 + np.random.default_rng(0).poisson(2.0, 50_000)
    m, _ = gg.simulate(TRUE_GG, x, seed=0)
    fit = gg.fit(x, m)
    # p and gamma trade off against each other (sd about 5% each at this size); q is sharp
    assert _rel(fit.p, TRUE_GG.p) < 0.15
    assert _rel(fit.gamma, TRUE_GG.gamma) < 0.15
    assert _rel(fit.q, TRUE_GG.q) < 0.05
    assert _rel(fit.mean_spend, TRUE_GG.mean_spend) < 0.02


def test_gamma_gamma_expected_spend_shrinks_towards_the_truth() -> None:
    x = 1 + np.random.default_rng(3).poisson(1.0, 5000)
    m, true_mean = gg.simulate(TRUE_GG, x, seed=3)
    fit = gg.fit(x, m)
    e = gg.expected_spend(fit, x, m)
    # the conditional expectation beats the customer's own mean as an estimate of p / nu
    assert np.mean((e - true_mean) ** 2) < 0.85 * np.mean((m - true_mean) ** 2)


def test_gamma_gamma_closed_forms_by_hand() -> None:
    params = gg.GammaGammaParams(p=2.0, q=3.0, gamma=10.0)
    assert params.mean_spend == pytest.approx(10.0)  # 2 * 10 / (3 - 1)
    e = gg.expected_spend(params, np.array([0.0, 1.0, 4.0]), np.array([99.0, 20.0, 20.0]))
    # (gamma + m x) p / (p x + q - 1): x=0 -> 10 (population mean); x=1 -> 30*2/4; x=4 -> 90*2/10
    np.testing.assert_allclose(e, [10.0, 15.0, 18.0])
    # log-density integrates to 1 over m (x = 2)
    grid = np.linspace(1e-3, 400, 400_000)
    dens = np.exp(gg.log_likelihood(params, np.full(grid.size, 2.0), grid))
    assert np.trapezoid(dens, grid) == pytest.approx(1.0, abs=2e-3)


def test_gamma_gamma_refuses_bad_input() -> None:
    with pytest.raises(KlantbeeldError, match="m .* must be > 0"):
        gg.fit(np.array([1.0, 2.0]), np.array([10.0, 0.0]))
    with pytest.raises(KlantbeeldError, match="x .* must be >= 1"):
        gg.fit(np.array([0.0, 2.0]), np.array([10.0, 5.0]))
    with pytest.raises(KlantbeeldError, match="q must be > 1"):
        gg.expected_spend(gg.GammaGammaParams(1.0, 0.9, 1.0), np.ones(1), np.ones(1))


def test_clv_report_by_hand() -> None:
    r = clv_report(
        expected_purchases=[1.0, 0.5, 0.0, 2.0],
        expected_spend=[10.0, 20.0, 30.0, 5.0],
        purchases=[2, 0, 0, 1],
        revenue=[30.0, 0.0, 0.0, 8.0],
    )
    assert r["mae_purchases"] == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    assert r["predicted_purchases"] == 3.5 and r["actual_purchases"] == 3.0
    # CLV = 10, 10, 0, 10 against 30, 0, 0, 8
    assert r["mae_clv_eur"] == pytest.approx((20 + 10 + 0 + 2) / 4)
    assert r["predicted_clv_eur"] == 30.0 and r["actual_revenue_eur"] == 38.0
    # spend on the buyers: |10 - 15| and |5 - 8|
    assert r["mae_spend_eur"] == pytest.approx(4.0)
    # buyers (rows 0, 3) scored 1 and 2, non-buyers 0.5 and 0: perfect ranking
    assert r["roc_auc_any_purchase"] == 1.0
    worst = clv_report([0.0, 1.0], [1.0, 1.0], [1, 0], [1.0, 0.0])
    assert worst["roc_auc_any_purchase"] == 0.0


def test_decile_table_by_hand() -> None:
    t = decile_table(np.array([4.0, 1.0, 3.0, 2.0]), np.array([40.0, 10.0, 30.0, 20.0]), bins=2)
    assert t["customers"].tolist() == [2, 2]
    assert t["predicted_mean"].tolist() == [1.5, 3.5]
    assert t["actual_mean"].tolist() == [15.0, 35.0]


# ----------------------------------------------------------------------------- CLVModel


def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Customers whose future orders follow their past rate and whose spend their past AOV."""
    rng = np.random.default_rng(seed)
    rate = rng.gamma(1.0, 1.0, n)
    orders = rng.poisson(rate * 3)
    aov = rng.gamma(5.0, 8.0, n)
    first = rng.uniform(30, 400, n)
    X = pd.DataFrame(
        {
            "orders_total": orders,
            "monetary_total": orders * aov,
            "recency_days": np.where(orders > 0, first * rng.uniform(0, 1, n), np.nan),
            "first_order_days": np.where(orders > 0, first, np.nan),
            "noise": rng.normal(size=n),
        }
    )
    y = rng.poisson(rate)
    rev = np.array([rng.gamma(5.0, a / 5.0, k).sum() for a, k in zip(aov, y, strict=True)])
    return X, y, rev


@pytest.fixture(scope="module")
def fitted() -> tuple[CLVModel, pd.DataFrame]:
    X, y, r = _frame(4000, 0)
    Xv, yv, rv = _frame(2000, 1)
    model = CLVModel(horizon_days=30, n_estimators=200, num_threads=1, random_state=5)
    return model.fit(X, y, r, Xv, yv, rv), Xv


def test_clv_model_is_nan_outside_the_population(fitted) -> None:
    model, Xv = fitted
    out = model.predict_frame(Xv)
    no_orders = Xv["orders_total"].to_numpy() == 0
    assert no_orders.any()
    assert out[~no_orders].notna().all().all()
    assert out[no_orders].isna().all().all()
    np.testing.assert_allclose(out[CLV], out[EXPECTED_PURCHASES] * out["expected_spend"])


def test_clv_model_learns_rate_and_spend(fitted) -> None:
    model, _ = fitted
    X, y, r = _frame(3000, 2)
    pred = model.predict_frame(X)
    keep = X["orders_total"].to_numpy() > 0
    lgb = clv_report(pred[EXPECTED_PURCHASES][keep], pred["expected_spend"][keep], y[keep], r[keep])
    flat = clv_report(
        np.full(keep.sum(), y[keep].mean()), np.full(keep.sum(), 40.0), y[keep], r[keep]
    )
    assert lgb["roc_auc_any_purchase"] > 0.65
    assert lgb["mae_clv_eur"] < 0.9 * flat["mae_clv_eur"]
    assert 0.85 < lgb["purchases_ratio"] < 1.15


def test_clv_model_batch_equals_single_and_round_trips(fitted, tmp_path: Path) -> None:
    model, Xv = fitted
    full = model.predict_frame(Xv)
    row = model.predict_frame(Xv.iloc[[7]])
    pd.testing.assert_frame_equal(row, full.iloc[[7]].reset_index(drop=True))
    loaded = CLVModel.load(model.save(tmp_path / "m"))
    pd.testing.assert_frame_equal(loaded.predict_frame(Xv), full)


def test_clv_model_same_seed_same_model(tmp_path: Path) -> None:
    X, y, r = _frame(1500, 0)
    Xv, yv, rv = _frame(800, 1)
    paths = []
    for k in range(2):
        m = CLVModel(horizon_days=30, n_estimators=50, num_threads=1, random_state=3)
        paths.append(m.fit(X, y, r, Xv, yv, rv).save(tmp_path / str(k)))
    assert directory_hash(paths[0]) == directory_hash(paths[1])


def test_baseline_summaries_and_prediction() -> None:
    X = pd.DataFrame(
        {
            "orders_total": [0, 1, 3],
            "monetary_total": [0.0, 50.0, 90.0],
            "recency_days": [np.nan, 10.0, 5.0],
            "first_order_days": [np.nan, 10.0, 40.0],
        }
    )
    s = rfm_summaries(X)
    assert s["x"].tolist() == [0.0, 2.0]
    assert s["t_x"].tolist() == [0.0, 35.0]
    assert s["T"].tolist() == [10.0, 40.0]
    assert s["mean_value"].tolist() == [50.0, 30.0]
    X2, _, _ = _frame(3000, 4)
    base = BGNBDGammaGamma(horizon_days=30).fit(X2)
    out = base.predict_frame(X)
    assert out.iloc[0].isna().all()
    assert (out.iloc[1:][EXPECTED_PURCHASES] > 0).all()
    with pytest.raises(KlantbeeldError, match="need snapshot columns"):
        rfm_summaries(X.drop(columns="recency_days"))
