"""Calibration maps: known Platt parameters recovered, isotonic keeps ranking, choice by Brier."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import Calibrator, choose_calibrator


def _platt_data(n: int = 20000, a: float = 0.5, b: float = -1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    s = rng.normal(0, 2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-(a * s + b)))).astype(int)
    return s, y


def test_sigmoid_recovers_known_parameters() -> None:
    s, y = _platt_data()
    cal = Calibrator("sigmoid").fit(s, y)
    assert cal.a_ == pytest.approx(0.5, abs=0.03)
    assert cal.b_ == pytest.approx(-1.0, abs=0.05)


def test_centred_isotonic_is_monotone_and_keeps_ranking() -> None:
    s, y = _platt_data()
    cal = Calibrator("isotonic").fit(s, y)
    grid = np.linspace(cal.x_[0], cal.x_[-1], 1000)
    assert (np.diff(cal.predict(grid)) > 0).all()  # strictly increasing inside the knots
    assert (np.diff(cal.x_) > 0).all()
    assert 0 < cal.predict(np.array([-100.0]))[0] < cal.predict(np.array([100.0]))[0] < 1


def test_isotonic_by_hand() -> None:
    # scores 0..3 with y 0,1,0,1: scores 1 and 2 pool to 0.5 at their mean score 1.5
    cal = Calibrator("isotonic").fit(np.array([0.0, 1.0, 2.0, 3.0]), np.array([0, 1, 0, 1]))
    assert cal.x_.tolist() == [0.0, 1.5, 3.0]
    assert cal.y_.tolist() == pytest.approx([0.125, 0.5, 0.875])  # clipped by 0.5 / n
    assert cal.predict(np.array([2.25]))[0] == pytest.approx(0.6875)


def test_choice_prefers_isotonic_for_a_step_shape() -> None:
    rng = np.random.default_rng(1)
    s = rng.uniform(-3, 3, 20000)
    y = (rng.random(s.size) < np.where(s > 1, 0.9, 0.1)).astype(int)
    choice = choose_calibrator(s, y)
    assert choice.method == "isotonic"
    assert choice.brier["isotonic"] < choice.brier["sigmoid"]


def test_choice_prefers_sigmoid_for_a_logistic_shape() -> None:
    s, y = _platt_data(n=3000, seed=2)
    choice = choose_calibrator(s, y)
    assert choice.method == "sigmoid"


def test_round_trip_dict() -> None:
    s, y = _platt_data(n=2000)
    for method in ("isotonic", "sigmoid"):
        cal = Calibrator(method).fit(s, y)
        again = Calibrator.from_dict(cal.to_dict())
        np.testing.assert_array_equal(again.predict(s), cal.predict(s))


def test_bad_method() -> None:
    with pytest.raises(ValueError, match="method"):
        Calibrator("beta").fit(np.array([0.0, 1.0]), np.array([0, 1]))
