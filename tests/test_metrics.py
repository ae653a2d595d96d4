"""Metrics against values worked out by hand on tiny fixtures, plus perfect and worst cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training import metrics as m

# ten rows, already in descending score order: labels 1,0,1,1,0,0,1,0,0,0 (4 positives)
Y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 0, 0])
P = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05])


def test_roc_auc_by_hand() -> None:
    # negatives below each positive: 6 + 5 + 5 + 3 = 19 of 4 * 6 pairs
    assert m.roc_auc(Y, P) == pytest.approx(19 / 24)


def test_pr_auc_by_hand() -> None:
    # precision at each positive: 1/1, 2/3, 3/4, 4/7
    assert m.pr_auc(Y, P) == pytest.approx((1 + 2 / 3 + 3 / 4 + 4 / 7) / 4)


def test_brier_and_log_loss_by_hand() -> None:
    assert m.brier(Y, P) == pytest.approx(1.8525 / 10)
    probs_of_truth = [0.9, 0.2, 0.7, 0.6, 0.5, 0.6, 0.3, 0.8, 0.9, 0.95]
    assert m.log_loss(Y, P) == pytest.approx(-sum(map(math.log, probs_of_truth)) / 10)


def test_lift_by_hand() -> None:
    assert m.lift_at(Y, P, 0.1) == pytest.approx(1 / 0.4)  # top row is a positive
    assert m.lift_at(Y, P, 0.3) == pytest.approx((2 / 3) / 0.4)
    assert m.lift_at(Y, P, 1.0) == pytest.approx(1.0)


def test_audience_share_by_hand() -> None:
    assert m.audience_share_to_keep(Y, P, 0.5) == pytest.approx(0.3)
    assert m.audience_share_to_keep(Y, P, 0.75) == pytest.approx(0.4)
    assert m.audience_share_to_keep(Y, P, 0.95) == pytest.approx(0.7)  # 3.8 -> 4 positives
    assert m.audience_share_to_keep(Y, P, 1.0) == pytest.approx(0.7)


def test_ties_are_counted_as_one_block() -> None:
    y = np.array([1, 0, 1, 0])
    p = np.array([0.5, 0.5, 0.5, 0.1])
    assert m.lift_at(y, p, 0.25) == pytest.approx((2 / 3) / 0.5)  # 1 row of a 3-row block
    assert m.audience_share_to_keep(y, p, 0.5) == pytest.approx(0.75)  # block taken whole
    assert m.roc_auc(y, p) == pytest.approx(0.75)  # (1 + 0.5) / 2 for each positive
    # row order inside a tied block never matters
    assert m.lift_at(y[::-1], p[::-1], 0.25) == m.lift_at(y, p, 0.25)


def test_gain_curve_by_hand() -> None:
    g = m.gain_curve(Y, P, points=11)
    assert g["audience_share"].tolist() == pytest.approx(np.linspace(0, 1, 11).tolist())
    assert g["positives_share"].tolist() == pytest.approx(
        [0, 0.25, 0.25, 0.5, 0.75, 0.75, 0.75, 1.0, 1.0, 1.0, 1.0]
    )
    assert math.isnan(g["lift"].iloc[0])
    assert g["lift"].iloc[1] == pytest.approx(2.5)


def test_perfect_and_worst_rankings() -> None:
    y = np.array([1, 1, 0, 0])
    best = np.array([0.9, 0.8, 0.2, 0.1])
    worst = best[::-1]
    assert (m.roc_auc(y, best), m.pr_auc(y, best)) == (1.0, 1.0)
    assert m.audience_share_to_keep(y, best, 1.0) == 0.5
    assert m.lift_at(y, best, 0.5) == 2.0
    assert m.roc_auc(y, worst) == 0.0
    assert m.audience_share_to_keep(y, worst, 1.0) == 1.0
    assert m.lift_at(y, worst, 0.5) == 0.0
    assert m.brier(y, y.astype(float)) == 0.0
    assert m.brier(y, 1.0 - y) == 1.0


def test_calibration_table_by_hand() -> None:
    p = np.array([0.1] * 5 + [0.3] * 5)
    y = np.array([0, 0, 0, 0, 1, 0, 1, 0, 0, 1])
    t = m.calibration_table(y, p, bins=2)
    assert t["n"].tolist() == [5, 5]
    assert t["mean_predicted"].tolist() == pytest.approx([0.1, 0.3])
    assert t["observed_rate"].tolist() == pytest.approx([0.2, 0.4])
    assert t["relative_error"].tolist() == pytest.approx([0.5, 0.25])


def test_calibration_yardstick_matches_the_binomial() -> None:
    from scipy.stats import binom

    # one bin of 2,000 rows at p = 0.05: the observed count k passes when
    # |100 - k| <= 0.1 k, i.e. 91 <= k <= 111
    exact = binom.cdf(111, 2000, 0.05) - binom.cdf(90, 2000, 0.05)
    y = m.calibration_yardstick(np.full(2000, 0.05), bins=1, draws=4000, seed=3)
    assert y.bins_checked == 1
    assert y.expected_bins_within == pytest.approx(exact, abs=0.025)
    assert y.all_bins_pass_probability == pytest.approx(exact, abs=0.025)


def test_calibration_yardstick_bins_pass_independently() -> None:
    # a common rate passes always; a rare one almost never; all-pass is their product
    p = np.r_[np.full(3000, 0.001), np.full(3000, 0.5)]
    y = m.calibration_yardstick(p, bins=2, draws=500, seed=0)
    assert y.bins_checked == 2
    assert 1.0 <= y.expected_bins_within < 1.4
    assert y.all_bins_pass_probability == pytest.approx(y.expected_bins_within - 1.0)
    # bins below min_n are not checked; same seed, same answer
    assert m.calibration_yardstick(p, bins=2, min_n=3001).bins_checked == 0
    assert m.calibration_yardstick(p, seed=5) == m.calibration_yardstick(p, seed=5)
    with pytest.raises(ValueError, match="probabilities in"):
        m.calibration_yardstick(np.array([0.2, 1.5]))


def test_binary_report_names() -> None:
    r = m.binary_report(Y, P).as_metrics("test")
    assert r["test_roc_auc"] == pytest.approx(19 / 24)
    assert r["test_lift_at_10pct"] == pytest.approx(2.5)
    assert r["test_audience_share_keep_95pct"] == pytest.approx(0.7)
    assert r["test_audience_share_keep_100pct"] == pytest.approx(0.7)
    assert r["test_n"] == 10.0


def test_input_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="same length"):
        m.roc_auc([0, 1], [0.5])
    with pytest.raises(ValueError, match="both classes"):
        m.roc_auc([1, 1], [0.5, 0.6])
    with pytest.raises(ValueError, match="only 0 and 1"):
        m.brier([0, 2], [0.5, 0.6])
    with pytest.raises(ValueError, match="keep"):
        m.audience_share_to_keep(Y, P, 0.0)


def test_brier_and_log_loss_are_sklearns() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    p = rng.uniform(0.0, 1.0, 500)
    assert m.brier(y, p) == skm.brier_score_loss(y, p)
    assert m.log_loss(y, p) == skm.log_loss(y, p)
    # one class only is still a valid evaluation of probabilities
    assert m.log_loss([1, 1], [0.5, 0.25]) == pytest.approx(-(math.log(0.5) + math.log(0.25)) / 2)
    # scores that are not probabilities are refused, not silently scored
    for fn in (m.brier, m.log_loss):
        with pytest.raises(ValueError, match="greater than 1"):
            fn([0, 1], [0.2, 1.5])
        with pytest.raises(ValueError, match="(less|lower) than 0"):
            fn([0, 1], [-0.2, 0.5])
