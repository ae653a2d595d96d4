"""Repurchase-timing hazard model: distribution math, censoring, determinism, persistence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from klantbeeld.errors import NotTrainedError
from models.repurchase_baselines import IntervalBaseline
from models.repurchase_distribution import (
    combine_first_purchase,
    cumulative_at_days,
    distribution_frame,
    distribution_to_hazards,
    hazards_to_distribution,
    median_days,
    restricted_mean_days,
    window_probability,
)
from models.repurchase_hazard import hazard_feature_names, hazard_table, validate_labels
from models.repurchase_timing import RepurchaseTimingModel


def synth_pairs(
    n: int,
    seed: int,
    *,
    item_cycles: tuple[float, ...] = (70.0,),
    shape: float = 30.0,
    churn: float = 0.0,
    window_weeks: int = 12,
    weeks: int = 12,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Customer x item pairs of a renewal process with gamma cycles, seen at T = day 0.

    Returns pair features at T, the week of the next purchase (0 = not seen), the weeks each
    pair was observed (``window_weeks``: pairs without a purchase are censored there) and the
    true days to the next purchase (inf for churned customers).
    """
    rng = np.random.default_rng(seed)
    cyc = rng.choice(np.asarray(item_cycles, dtype=float), n)
    own = cyc * rng.lognormal(0.0, 0.2, n)
    gaps = rng.gamma(shape, own[:, None] / shape, size=(n, 40))
    times = -rng.uniform(300.0, 300.0 + own)[:, None] + np.cumsum(gaps, axis=1)
    before = times <= 0
    n_before = before.sum(axis=1)
    last = np.where(before, times, -np.inf).max(axis=1)
    nxt = np.where(~before, times, np.inf).min(axis=1)
    nxt = np.where(rng.random(n) >= churn, nxt, np.inf)
    X = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "item_id": [f"i{int(c)}" for c in cyc],
            "purchases": n_before.astype(float),
            "days_since_last": -last,
            "own_cycle_days": np.where(
                n_before > 1, (last - times[:, 0]) / np.maximum(n_before - 1, 1), np.nan
            ),
            "median_cycle_days": cyc,
        }
    )
    seen = min(window_weeks, weeks)
    event_week = np.where(nxt <= 7 * seen, np.ceil(nxt / 7), 0).astype(int)
    return X, event_week, np.full(n, seen), nxt


def _query(elapsed: list[float], cycle: float = 70.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": [f"q{i}" for i in range(len(elapsed))],
            "item_id": "i70",
            "purchases": 5.0,
            "days_since_last": elapsed,
            "own_cycle_days": cycle,
            "median_cycle_days": cycle,
        }
    )


# -- distribution math on hand-worked numbers ---------------------------------------------
def test_hazards_to_distribution_hand_worked() -> None:
    dist = hazards_to_distribution(np.array([[0.5, 0.5, 0.5], [0.0, 1.0, 0.3]]))
    np.testing.assert_allclose(dist[0], [0.5, 0.25, 0.125, 0.125])
    np.testing.assert_allclose(dist[1], [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(distribution_to_hazards(dist[:1]), [[0.5, 0.5, 0.5]])


def test_median_and_quantiles_hand_worked() -> None:
    dist = np.array([[0.5, 0.25, 0.125, 0.125]])
    # F(7 days) = 0.5 exactly, so the median is the end of week 1.
    assert median_days(dist)[0] == pytest.approx(7.0)
    # 0.6 lies 0.1 / 0.25 of the way into week 2: 7 + 7 * 0.4 = 9.8 days.
    assert median_days(dist, quantile=0.6)[0] == pytest.approx(9.8)
    # Conditional on a purchase within 2 weeks: p = (0.25, 0.75) -> 7 + 7 * (0.25 / 0.75).
    cond = np.array([[0.1, 0.3, 0.6]])
    assert median_days(cond, conditional=True)[0] == pytest.approx(7 + 7 / 3)


def test_median_beyond_horizon_extrapolates_last_hazard() -> None:
    # Hazards 0.1, 0.1: S(14 d) = 0.81; with weekly hazard 0.1 kept, S = 0.5 after
    # ln(0.5 / 0.81) / ln(0.9) = 4.5789 more weeks -> 14 + 32.05 = 46.05 days.
    dist = hazards_to_distribution(np.array([[0.1, 0.1]]))
    expected = 14 + 7 * math.log(0.5 / 0.81) / math.log(0.9)
    assert median_days(dist)[0] == pytest.approx(expected)
    assert expected == pytest.approx(46.05, abs=0.01)
    # No hazard at all: capped.
    assert median_days(np.array([[0.0, 0.0, 1.0]]), max_days=200)[0] == 200.0


def test_cumulative_and_window_probability() -> None:
    dist = np.array([[0.5, 0.25, 0.125, 0.125]])
    assert cumulative_at_days(dist, 10.5)[0] == pytest.approx(0.625)
    assert cumulative_at_days(dist, 100.0)[0] == pytest.approx(0.875)
    # Days 3.5..10.5: half of week 1 (0.25) plus half of week 2 (0.125).
    assert window_probability(dist, 3.5, 10.5)[0] == pytest.approx(0.375)


def test_combine_first_purchase_of_two_independent_pairs() -> None:
    pair = hazards_to_distribution(np.array([[0.5, 0.5]]))
    keys, comb = combine_first_purchase(np.vstack([pair, pair, pair]), np.array(["a", "a", "b"]))
    assert list(keys) == ["a", "b"]
    # Customer a: S(1w) = 0.5^2 = 0.25, S(2w) = 0.25^2 = 0.0625.
    np.testing.assert_allclose(comb[0], [0.75, 0.1875, 0.0625])
    np.testing.assert_allclose(comb[1], pair[0])


def test_distribution_frame_dates() -> None:
    frame = distribution_frame(
        np.array([[0.5, 0.25, 0.25]]),
        pd.DataFrame({"customer_id": ["c1"]}),
        as_of="2026-01-05",
        keys=["customer_id"],
    )
    assert list(frame.columns) == [
        "customer_id",
        "p_week_1",
        "p_week_2",
        "p_none",
        "p_within_horizon",
        "expected_days",
        "expected_date",
    ]
    # Given a purchase within 2 weeks: p = (2/3, 1/3), median 0.5 / (2/3) * 7 = 5.25 days.
    assert frame.loc[0, "expected_days"] == pytest.approx(5.25)
    assert frame.loc[0, "expected_date"] == pd.Timestamp("2026-01-10")
    assert restricted_mean_days(np.array([[0.5, 0.25, 0.25]]))[0] == pytest.approx(
        3.5 * (1 + 0.5) + 3.5 * (0.5 + 0.25)
    )


# -- censoring -----------------------------------------------------------------------------
def test_censored_pairs_are_not_treated_as_never_repurchasing() -> None:
    # A 70-day cycle but only 5 weeks observed after T: about half the pairs have not
    # repurchased yet and are censored at week 5.
    X, ev, risk, _ = synth_pairs(3000, 0, window_weeks=5)
    assert (ev == 0).mean() == pytest.approx(0.5, abs=0.05)
    q = _query([36.0, 14.0])  # just past half a cycle; a fifth of a cycle
    model = RepurchaseTimingModel(n_estimators=80, random_state=0).fit(X, ev, risk)
    p12 = 1.0 - model.predict_distribution(q)[:, -1]
    assert p12[0] > 0.95
    assert p12[1] > 0.9  # the next purchase (day ~56) lies beyond every observed window
    expected = model.predict_expected_days(q)
    assert expected[0] == pytest.approx(34.0, abs=4.0)
    assert expected[1] == pytest.approx(56.0, abs=7.0)
    # The same pairs labelled "no purchase in 12 weeks" (censoring ignored) collapse to ~0:
    naive = RepurchaseTimingModel(n_estimators=80, random_state=0).fit(X, ev, None)
    assert 1.0 - naive.predict_distribution(q)[1, -1] < 0.2


def test_hazard_table_rows_per_pair_and_week_hand_worked() -> None:
    # Pair 0 repurchases in week 2 (rows for weeks 1, 2; target 1 at 2); pair 1 is censored
    # after 1 week (one row, target 0); pair 2 is seen all 3 weeks without a purchase.
    base = np.array([[10.0, 20.0], [5.0, np.nan], [30.0, 0.0]], dtype=np.float32)
    ev, risk = validate_labels(3, [2, 0, 0], [3, 1, 3], 3)
    np.testing.assert_array_equal(risk, [2, 1, 3])
    Xh, y, w = hazard_table(
        base, ev, risk, weeks=3, elapsed_idx=0, cycle_idx=[1], rng=None, max_negative_rows=None
    )
    # Week 1: pairs 0, 1, 2 (no positive); week 2: pair 0 positive, pair 2; week 3: pair 2.
    np.testing.assert_array_equal(Xh[:, 2], [1, 1, 1, 2, 2, 3])  # week column
    np.testing.assert_array_equal(y, [0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(w, np.ones(6))
    # Age at mid-week: elapsed + 7w - 3.5 days; over the cycle where the cycle is > 0.
    np.testing.assert_allclose(Xh[:, 3], [13.5, 8.5, 33.5, 20.5, 40.5, 47.5])
    np.testing.assert_allclose(Xh[:, 4], [13.5 / 20, np.nan, np.nan, 20.5 / 20, np.nan, np.nan])
    assert hazard_feature_names(["since", "cycle"], [1]) == [
        "since",
        "cycle",
        "week",
        "age_at_week_days",
        "age_at_week_days_over_cycle",
    ]
    # Capped target-0 rows are subsampled and reweighted by the inverse rate (5 -> 2.5).
    _, y2, w2 = hazard_table(
        base,
        ev,
        risk,
        weeks=3,
        elapsed_idx=0,
        cycle_idx=[1],
        rng=np.random.default_rng(0),
        max_negative_rows=2,
    )
    assert y2.sum() == 1
    np.testing.assert_allclose(w2[y2 == 0], 2.5)


def test_get_params_are_the_constructor_arguments() -> None:
    model = RepurchaseTimingModel(weeks=8, n_estimators=5, random_state=3)
    params = model.get_params()
    assert params["weeks"] == 8 and params["n_estimators"] == 5 and params["random_state"] == 3
    assert set(params) == {
        "weeks", "elapsed_col", "cycle_cols", "n_estimators", "learning_rate", "num_leaves",
        "min_child_samples", "reg_lambda", "max_negative_rows", "early_stopping_rounds",
        "random_state", "n_jobs", "max_days",
    }  # fmt: skip
    assert RepurchaseTimingModel(**params).get_params() == params
    assert model.set_params(weeks=4).weeks == 4
    base = IntervalBaseline("customer_mean", weeks=6)
    assert base.get_params()["kind"] == "customer_mean"
    assert base.get_params()["weeks"] == 6


def test_label_validation_names_the_argument() -> None:
    X, ev, risk, _ = synth_pairs(50, 0)
    with pytest.raises(ValueError, match="event_week"):
        RepurchaseTimingModel().fit(X, np.full(50, 13))
    with pytest.raises(ValueError, match="at_risk_weeks"):
        RepurchaseTimingModel().fit(X, ev, risk[:10])
    with pytest.raises(ValueError, match="elapsed_col"):
        RepurchaseTimingModel().fit(X.drop(columns="days_since_last"), ev)
    with pytest.raises(NotTrainedError):
        RepurchaseTimingModel().predict_hazard(X)


# -- quality against the interval baselines ------------------------------------------------
def test_beats_interval_baselines_on_a_later_sample() -> None:
    cycles = (14.0, 28.0, 49.0)
    # A third of the customers stop buying (unpredictably): the expected date is the
    # median given a purchase within the horizon, so they do not drag it past week 12.
    X, ev, risk, nxt = synth_pairs(4000, 1, item_cycles=cycles, shape=8.0, churn=0.3)
    Xt, evt, _, nxtt = synth_pairs(3000, 2, item_cycles=cycles, shape=8.0, churn=0.3)
    model = RepurchaseTimingModel(n_estimators=120, random_state=0).fit(X, ev, risk)
    days = np.where(np.isfinite(nxt), nxt, np.nan)
    item = IntervalBaseline("item_median").fit(X, ev, days)
    own = IntervalBaseline("customer_mean").fit(X, ev, days)
    hit = evt > 0
    mae = {
        name: float(np.mean(np.abs(est.predict_expected_days(Xt)[hit] - nxtt[hit])))
        for name, est in (("model", model), ("item", item), ("own", own))
    }
    assert mae["model"] < mae["own"] < mae["item"]
    assert mae["model"] < 0.95 * mae["item"]


def test_baseline_distribution_centres_on_point_forecast() -> None:
    q = _query([0.0], cycle=14.0)
    base = IntervalBaseline("item_median", weeks=4)
    base.fit(q)  # no observed days: cv stays 0.25, so sd = 3.5 days
    assert base.cv_ == 0.25
    dist = base.predict_distribution(q)
    assert dist.sum() == pytest.approx(1.0)
    assert base.predict_expected_days(q)[0] == pytest.approx(14.0, abs=0.01)
    # Normal(14, 3.5) truncated at 0: week 2 (7..14] holds Phi(0) - Phi(-2) = 0.4772.
    assert dist[0, 1] == pytest.approx(0.47725, abs=1e-4)


# -- determinism and persistence -----------------------------------------------------------
def test_same_seed_same_model_and_save_load_round_trip(tmp_path) -> None:
    X, ev, risk, _ = synth_pairs(1500, 3, item_cycles=(21.0, 42.0), shape=6.0, churn=0.2)
    Xv, evv, riskv, _ = synth_pairs(800, 4, item_cycles=(21.0, 42.0), shape=6.0, churn=0.2)
    kwargs: dict[str, Any] = {"n_estimators": 60, "random_state": 7, "max_negative_rows": 5000}
    a = RepurchaseTimingModel(**kwargs).fit(X, ev, risk, eval_set=(Xv, evv, riskv))
    b = RepurchaseTimingModel(**kwargs).fit(X, ev, risk, eval_set=(Xv, evv, riskv))
    assert a.n_hazard_rows_ == b.n_hazard_rows_
    assert a.n_hazard_rows_ < int((risk[:, None] >= np.arange(1, 13)).sum())  # subsampled
    np.testing.assert_array_equal(a.predict_hazard(Xv), b.predict_hazard(Xv))
    path = a.save(tmp_path / "model")
    loaded = RepurchaseTimingModel.load(path)
    np.testing.assert_array_equal(loaded.predict_distribution(Xv), a.predict_distribution(Xv))
    assert loaded.feature_names_ == [
        "purchases",
        "days_since_last",
        "own_cycle_days",
        "median_cycle_days",
    ]
    with pytest.raises(NotTrainedError):
        RepurchaseTimingModel.load(tmp_path / "absent")


def test_explanations_sum_to_the_hazard_margin_and_name_the_due_signal() -> None:
    from models.tree_paths import TreePaths

    X, ev, risk, _ = synth_pairs(2000, 5, item_cycles=(28.0, 56.0), shape=8.0)
    model = RepurchaseTimingModel(n_estimators=60, random_state=0).fit(X, ev, risk)
    # path contributions + bias are the hazard margin of every (pair, week) row
    rows = model._expand(
        model._pair_matrix(X.iloc[:50], model.feature_names_), np.full(50, 3, np.float32)
    )
    paths = TreePaths(model.booster_, num_iteration=model.best_iteration_)
    margin = model.booster_.predict(rows, raw_score=True, num_iteration=model.best_iteration_)
    np.testing.assert_allclose(paths.contributions(rows).sum(axis=1) + paths.bias, margin)
    # a pair about due: its age relative to the cycle pushes its hazard up
    why = model.explain(_query([27.0, 56.0, 300.0], cycle=28.0))
    assert list(why.columns) == ["top_up", "top_down"] and len(why) == 3
    names = set(model.hazard_feature_names_)
    assert all(set(u) <= names and len(u) <= 3 for u in why.top_up)
    assert any("age_at_week" in n or n == "days_since_last" for n in why.top_up.iloc[0])
