"""Threshold curve from backtest labels and scores; the chooser's goals; report and plot."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from klantbeeld.errors import ConfigError, NotTrainedError
from klantbeeld.settings import Settings
from serving.targeting.curve_source import CURVE_ARTIFACT, last_backtest_curve
from serving.targeting.report import write_choice
from serving.targeting.threshold import Goal, choose_threshold, oracle_share_to_keep
from training.threshold_curve import threshold_curve


def _data(n: int = 4000, seed: int = 3):
    rng = np.random.default_rng(seed)
    true_p = rng.beta(0.6, 3.0, n)
    y = (rng.random(n) < true_p).astype(int)
    noisy = np.clip(true_p + rng.normal(0, 0.08, n), 0.001, 0.999)
    return y, np.round(noisy, 3), true_p  # rounding makes ties


def test_curve_rows_match_brute_force_per_threshold():
    y, p, _ = _data()
    curve = threshold_curve(y, p, points=201)
    assert curve["threshold"].is_monotonic_decreasing
    assert curve["threshold"].is_unique
    for _, row in curve.sample(40, random_state=0).iterrows():
        sel = p >= row["threshold"]
        assert row["audience_size"] == sel.sum()
        assert row["conversions_share"] == pytest.approx(y[sel].sum() / y.sum())
        assert row["expected_conversions_share"] == pytest.approx(p[sel].sum() / p.sum())
    assert curve["audience_share"].iloc[-1] == 1.0
    assert curve["conversions_share"].iloc[-1] == pytest.approx(1.0)


def test_keep_conversions_picks_smallest_audience_reaching_the_share():
    y, p, _ = _data()
    curve = threshold_curve(y, p, points=1001)
    choice = choose_threshold(curve, Goal("keep_conversions", 0.95))
    sel = p >= choice.threshold
    assert y[sel].sum() / y.sum() >= 0.95
    assert choice.audience_size == sel.sum()
    # the next higher threshold on the curve keeps fewer than 95%
    higher = curve[curve["threshold"] > choice.threshold]["threshold"].min()
    assert y[p >= higher].sum() / y.sum() < 0.95
    assert choice.spend_saved == pytest.approx(1 - sel.mean())
    assert choice.oracle_audience_share is None


def test_size_and_budget_goals_stay_within_the_cap():
    y, p, _ = _data()
    curve = threshold_curve(y, p)
    by_size = choose_threshold(curve, Goal("max_audience", 500))
    assert by_size.audience_size <= 500
    assert (p >= by_size.threshold).sum() <= 500
    # scaled to a population of 40,000 (10x the test period): the cap applies to that
    scaled = choose_threshold(curve, Goal("max_audience", 5000), population=40_000)
    assert scaled.audience_size <= 5000 and scaled.population == 40_000
    assert scaled.audience_share == pytest.approx(by_size.audience_share, abs=0.01)
    budget = choose_threshold(curve, Goal("budget", 1000.0, cost_per_person=2.0))
    assert budget.cost is not None and budget.cost <= 1000.0
    assert budget.audience_size <= 500
    with pytest.raises(ConfigError, match="smallest audience"):
        choose_threshold(curve, Goal("max_audience", 1), population=10**7)


@pytest.mark.parametrize(
    "goal",
    [("keep_conversions", 1.5, None), ("max_audience", 0, None), ("budget", 100.0, None)],
)
def test_bad_goals_are_config_errors(goal):
    with pytest.raises(ConfigError):
        Goal(*goal)


def test_oracle_column_and_share():
    y, p, true_p = _data()
    curve = threshold_curve(y, p, oracle=true_p)
    o = oracle_share_to_keep(curve, 0.95)
    order = np.argsort(-true_p)
    need = int(np.argmax(np.cumsum(y[order]) >= 0.95 * y.sum())) + 1
    assert o == pytest.approx(need / len(y), abs=0.005)


def test_curve_rejects_bad_input():
    with pytest.raises(ValueError, match="no conversions"):
        threshold_curve(np.zeros(5), np.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="one length"):
        threshold_curve(np.ones(5), np.ones(4))


def _log_runs(tmp_path, settings, curves):
    import mlflow

    from training.tracking import configure_mlflow, ensure_experiment

    configure_mlflow(settings)
    exp = ensure_experiment("conversion_intent", settings)
    for k, (period, curve) in enumerate(curves):
        path = tmp_path / f"c{k}" / "threshold_curve.csv"
        path.parent.mkdir()
        curve.to_csv(path, index=False)
        with mlflow.start_run(experiment_id=exp, tags={"test_period": period}):
            mlflow.log_artifact(str(path), artifact_path=CURVE_ARTIFACT.rsplit("/", 1)[0])


def test_last_backtest_curve_reads_the_latest_run_and_writes_report(tmp_path):
    settings = Settings(home=tmp_path / "home")
    with pytest.raises(NotTrainedError):
        last_backtest_curve("conversion_intent", settings)
    y, p, true_p = _data()
    _log_runs(
        tmp_path,
        settings,
        [
            ("2026-01-01/2026-01-08", threshold_curve(y, p[::-1], oracle=true_p)),
            ("2026-02-01/2026-02-08", threshold_curve(y, p, oracle=true_p)),
        ],
    )
    source = last_backtest_curve("conversion_intent", settings)
    assert source.test_period == "2026-02-01/2026-02-08"
    pd.testing.assert_frame_equal(source.curve, threshold_curve(y, p, oracle=true_p))
    choice = choose_threshold(source.curve, Goal("keep_conversions", 0.95))
    report = write_choice(source, choice, tmp_path / "out")
    on_disk = json.loads((tmp_path / "out" / "threshold_conversion_intent.json").read_text())
    assert on_disk["threshold"] == choice.threshold
    assert on_disk["audience_vs_oracle"] == pytest.approx(
        choice.audience_share / choice.oracle_audience_share
    )
    assert "recent visitor" in on_disk["spend_saved_vs"]
    png = tmp_path / "out" / "threshold_conversion_intent.png"
    assert report["plot_file"] == str(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_threshold(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from klantbeeld.cli import app

    home = tmp_path / "home"
    monkeypatch.setenv("KLANTBEELD_HOME", str(home))
    monkeypatch.delenv("KLANTBEELD_MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    y, p, _ = _data()
    _log_runs(tmp_path, Settings(home=home), [("2026-02-01/2026-02-08", threshold_curve(y, p))])
    from klantbeeld.settings import get_settings

    runner = CliRunner()
    get_settings.cache_clear()
    try:
        res = runner.invoke(
            app,
            ["threshold", "--budget", "300", "--cost-per-person", "0.5", "--out", str(tmp_path)],
        )
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "threshold_conversion_intent.json").read_text())
    assert report["audience_size"] <= 600 and report["cost"] <= 300
    assert "spend saved" in res.output
    both = runner.invoke(app, ["threshold", "--keep-conversions", "0.9", "--max-audience", "5"])
    assert both.exit_code != 0
