"""Seasonal adjustment: the intensity map, its fit, the lagged cutoffs and the stored shift."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from models.churn import ChurnModel
from models.seasonality import (
    IntensityShift,
    adjust,
    fit_log_multiplier,
    plan_seasonal,
    seasonal_shift,
)


def test_adjust_is_the_purchase_intensity_scaled() -> None:
    p = np.array([0.01, 0.2, 0.5, 0.9])
    # churn: P(no purchase) = exp(-L); twice the intensity squares it
    np.testing.assert_allclose(adjust(p, np.log(2.0), label_is_purchase=False), p**2)
    # conversion: P(purchase) = 1 - exp(-L)
    np.testing.assert_allclose(adjust(p, np.log(2.0), label_is_purchase=True), 1 - (1 - p) ** 2)
    np.testing.assert_allclose(adjust(p, 0.0, label_is_purchase=False), p)
    # increasing in p: rankings survive
    assert np.all(np.diff(adjust(p, 0.7, label_is_purchase=False)) > 0)


@pytest.mark.parametrize("label_is_purchase", [False, True])
def test_fit_recovers_a_planted_multiplier(label_is_purchase: bool) -> None:
    rng = np.random.default_rng(0)
    p = rng.beta(1.0, 2.0, size=200_000)
    y = rng.random(p.size) < adjust(p, -0.3, label_is_purchase)
    d = fit_log_multiplier(p, y, label_is_purchase)
    assert d == pytest.approx(-0.3, abs=0.02)
    assert adjust(p, d, label_is_purchase).mean() == pytest.approx(y.mean(), abs=1e-9)


def test_shift_is_the_difference_of_the_two_seasons() -> None:
    rng = np.random.default_rng(1)
    p_ref = rng.beta(2.0, 3.0, size=100_000)
    p_tgt = rng.beta(2.0, 3.0, size=100_000)
    y_ref = rng.random(p_ref.size) < adjust(p_ref, 0.1, False)  # model off by 0.1 there
    y_tgt = rng.random(p_tgt.size) < adjust(p_tgt, 0.5, False)  # and by 0.5 here
    s = seasonal_shift(p_ref, y_ref, p_tgt, y_tgt, False, "2025-05-06", "2025-08-04")
    assert s is not None
    assert s.log_multiplier == pytest.approx(0.4, abs=0.03)
    assert (s.reference, s.target) == ("2025-05-06", "2025-08-04")
    assert IntensityShift.from_dict(s.to_dict()) == s


def test_too_few_rows_or_one_class_gives_no_shift() -> None:
    p = np.full(500, 0.3)
    assert seasonal_shift(p[:100], np.r_[np.zeros(50), np.ones(50)], p, p > 0.2, False) is None
    assert seasonal_shift(p, np.zeros(500), p, np.r_[np.zeros(250), np.ones(250)], False) is None


def test_unreachable_rate_gives_the_nearer_bound() -> None:
    p = np.full(1000, 0.5)
    assert fit_log_multiplier(p, np.ones(1000), label_is_purchase=True) == 3.0
    assert fit_log_multiplier(p, np.zeros(1000), label_is_purchase=True) == -3.0


def test_plan_lags_valid_test_and_end_by_a_year() -> None:
    valid, test, end = datetime(2026, 5, 5), datetime(2026, 8, 3), datetime(2026, 11, 1)
    start = datetime(2024, 11, 1)
    sp = plan_seasonal(valid, test, end, 90, start)
    assert sp is not None
    assert sp.cutoffs == {
        "reference": datetime(2025, 5, 6),
        "test": datetime(2025, 8, 4),
        "deploy": datetime(2025, 11, 2),
    }
    # auto: not for a one-week horizon; on: whenever the data allows
    assert plan_seasonal(valid, test, end, 7, start) is None
    assert plan_seasonal(valid, test, end, 7, start, mode="on") is not None
    assert plan_seasonal(valid, test, end, 90, start, mode="off") is None
    # less than a year of history before the validation cutoff
    assert plan_seasonal(valid, test, end, 90, datetime(2025, 5, 1)) is None
    with pytest.raises(ValueError, match="auto, on or off"):
        plan_seasonal(valid, test, end, 90, start, mode="sometimes")  # type: ignore[arg-type]


def test_scorer_applies_and_stores_the_shift(tmp_path) -> None:
    rng = np.random.default_rng(2)
    X = pd.DataFrame({"a": rng.normal(size=4000), "b": rng.normal(size=4000)})
    y = (rng.random(4000) < 1 / (1 + np.exp(-2 * X["a"]))).astype(int)
    m = ChurnModel(n_estimators=30, num_threads=1).fit(X[:3000], y[:3000], X[3000:], y[3000:])
    base = m.predict_calibrated(X)
    np.testing.assert_array_equal(m.predict_proba(X), base)
    m.seasonal_shift_ = IntensityShift(0.25, False, "2025-05-06", "2025-11-02")
    np.testing.assert_allclose(m.predict_proba(X), adjust(base, 0.25, False))
    m.save(tmp_path / "m")
    loaded = ChurnModel.load(tmp_path / "m")
    assert loaded.seasonal_shift_ == m.seasonal_shift_
    np.testing.assert_array_equal(loaded.predict_proba(X), m.predict_proba(X))
