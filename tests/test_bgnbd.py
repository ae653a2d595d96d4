"""BG/NBD likelihood, fit and prediction on tiny known cases and seeded simulations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.public import cdnow
from klantbeeld.errors import KlantbeeldError
from models import bgnbd

P = bgnbd.BGNBDParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


def test_no_repeat_likelihood_is_the_gamma_poisson_zero_term() -> None:
    # x = 0: L = (alpha / (alpha + T)) ** r  (the dropout term vanishes)
    T = np.array([10.0, 39.0])
    ll = bgnbd.log_likelihood(P, np.zeros(2), np.zeros(2), T)
    np.testing.assert_allclose(ll, P.r * np.log(P.alpha / (P.alpha + T)))


def test_expected_holdout_is_zero_for_zero_length_and_grows_with_history() -> None:
    x, t_x, T = np.array([0.0, 2.0, 2.0]), np.array([0.0, 30.0, 5.0]), np.full(3, 39.0)
    np.testing.assert_allclose(bgnbd.expected_in_holdout(P, 0.0, x, t_x, T), 0.0, atol=1e-12)
    e = bgnbd.expected_in_holdout(P, 39.0, x, t_x, T)
    assert e[1] > e[0] and e[1] > e[2]  # recent repeat buyer beats one who went quiet


def test_fit_recovers_simulated_parameters() -> None:
    true = bgnbd.BGNBDParams(r=0.5, alpha=5.0, a=0.8, b=2.5)
    T = np.random.default_rng(0).uniform(26, 39, 6000)
    x, t_x = bgnbd.simulate(true, T, seed=1)
    got = bgnbd.fit(x, t_x, T)
    assert got.r == pytest.approx(true.r, rel=0.15)
    assert got.alpha == pytest.approx(true.alpha, rel=0.2)
    assert got.a == pytest.approx(true.a, rel=0.35)
    assert got.b == pytest.approx(true.b, rel=0.35)
    # the maximum-likelihood point is at least as likely as the true parameters
    assert bgnbd.log_likelihood(got, x, t_x, T).sum() >= bgnbd.log_likelihood(true, x, t_x, T).sum()


def test_inconsistent_summaries_raise() -> None:
    with pytest.raises(KlantbeeldError, match="t_x"):
        bgnbd.fit(np.array([0.0]), np.array([1.0]), np.array([5.0]))
    with pytest.raises(KlantbeeldError, match="t_x <= T"):
        bgnbd.fit(np.array([1.0]), np.array([6.0]), np.array([5.0]))


def test_cdnow_summaries_count_same_day_purchases_once() -> None:
    lines = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a", "b"],
            "date": pd.to_datetime(
                ["1997-01-01", "1997-01-01", "1997-01-15", "1997-11-01", "1997-03-01"]
            ),
            "quantity": 1.0,
            "value": 10.0,
        }
    )
    s = cdnow.summaries(lines)
    assert s.loc["a", "x"] == 1 and s.loc["a", "t_x"] == 2.0 and s.loc["a", "y"] == 1
    assert s.loc["b", "x"] == 0 and s.loc["b", "t_x"] == 0 and s.loc["b", "y"] == 0
    assert s.loc["a", "T"] == pytest.approx(272 / 7)
