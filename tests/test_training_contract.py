"""One training-job contract: every job returns a TrainingResult logged by one function.

Every trainer of :data:`training.jobs.TRAINERS` runs once, for real, on one small demo
shop and one throwaway store; then the recommender is trained again with a worse
configuration on the same holdout and must stay challenger.
"""

from __future__ import annotations

import functools
import re
from datetime import datetime
from pathlib import Path

import mlflow
import pytest

from klantbeeld.settings import Settings
from training import jobs
from training import recommender_job as rj
from training.registry import format_test_period
from training.result import TrainingResult
from training.tracking import configure_mlflow

ISO_PERIOD = re.compile(r"^\d{4}-\d{2}-\d{2}/\d{4}-\d{2}-\d{2}$")


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("contract") / "shop"
    generate_demo_shop(out, n_customers=800, seed=7, days=365, n_items=120)
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("contract-home"),
        seed=42,
        threads=1,
        churn_horizon_days=30,
        churn_population_days=120,
        clv_horizon_days=30,
        repurchase_weeks=4,
        recommender_als_factors=8,
        recommender_als_iterations=5,
        recommender_ranker_estimators=30,
    )


@pytest.fixture(scope="module")
def results(shop_dir: Path, settings: Settings) -> dict[str, TrainingResult]:
    """Each trainer once, in TRAINERS order, on the same store (nothing promoted by force)."""
    return {name: train(settings, shop_dir, False) for name, train in jobs.TRAINERS.items()}


def test_every_job_returns_a_registered_training_result(results, settings) -> None:
    assert list(results) == [
        "conversion_intent",
        "churn",
        "repurchase_timing",
        "recommender",
        "clv",
    ]
    client = mlflow.MlflowClient()
    for name, r in results.items():
        assert type(r) is TrainingResult, name
        assert (r.model, r.version, r.promoted, r.promotion_reason) == (
            name,
            1,
            True,
            "no champion yet",
        ), name
        run = client.get_run(r.run_id)
        assert client.get_experiment(run.info.experiment_id).name == f"klantbeeld-{name}"
        assert r.experiment_id == run.info.experiment_id
        assert r.tracking_uri == settings.resolved_tracking_uri
        assert run.info.artifact_uri.startswith(settings.artifact_root.as_uri()), name
        challenger = client.get_model_version_by_alias(f"klantbeeld-{name}", "challenger")
        assert int(challenger.version) == 1 and challenger.run_id == r.run_id
        # the finite metrics are in the run, with the values the result carries
        logged = run.data.metrics
        assert {k: v for k, v in r.metrics.items() if k in logged and k != "log_register_seconds"}
        for k, v in logged.items():
            if k in r.metrics and k != "log_register_seconds":
                assert v == pytest.approx(r.metrics[k]), (name, k)
        assert r.as_of is not None and r.n_test and r.n_test > 0, name
    assert results["repurchase_timing"].level == "item"
    assert results["recommender"].ranker and results["recommender"].model_dir.is_dir()


def test_test_period_tag_has_one_format_for_every_job(results) -> None:
    client = mlflow.MlflowClient()
    for name, r in results.items():
        tags = client.get_run(r.run_id).data.tags
        assert tags["test_period"] == r.test_period, name
        assert ISO_PERIOD.match(r.test_period), (name, r.test_period)
        start, end = (datetime.fromisoformat(d) for d in r.test_period.split("/"))
        assert start == datetime.combine(r.as_of.date(), datetime.min.time()), name
        assert format_test_period(start, end) == r.test_period
        assert tags["model"] == name


def _events_and_ids(shop_dir: Path):
    from features.shop import open_shop
    from models.recommender.interactions import id_map_from_shop, load_events

    shop = open_shop(shop_dir, threads=1)
    return load_events(shop), id_map_from_shop(shop)


def test_recommender_rescored_on_its_own_holdout_gives_its_test_recall(
    results, shop_dir: Path, settings: Settings
) -> None:
    from training.registry import load_version

    r = results["recommender"]
    configure_mlflow(settings)
    # the registered (served) object: histories refreshed to the end of the data
    nbo = load_version("recommender", r.version).unwrap_python_model().nbo
    events, ids = _events_and_ids(shop_dir)
    got = rj.champion_recall(
        nbo, events, ids, r.as_of, settings.recommender_test_days, ["purchase"]
    )
    assert got == pytest.approx(r.metrics["test_recall_at_10"], abs=1e-12)


def test_recommender_champion_of_an_earlier_period_is_rescored_on_the_new_holdout(
    shop_dir: Path, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import timedelta

    # a fresh store under a new home (not the module's, which MLFLOW_TRACKING_URI names)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    s = settings.model_copy(update={"home": tmp_path / "home"})
    late = jobs.TRAINERS["recommender"](s, shop_dir, False)  # default T
    early = rj.train_recommender(s, shop_dir, as_of=late.as_of - timedelta(days=7))
    # the champion was fitted on events up to T, after the challenger's cutoff T - 7 days:
    # it may have seen that holdout, so it is not rescored and nothing is promoted
    assert (early.version, early.promoted) == (2, False)
    assert early.promotion_reason == "champion has no metric on the challenger's test period"
    assert "champion_test_recall_at_10" not in mlflow.get_run(early.run_id).data.metrics

    # force the early one to champion; a later challenger rescores it on the later holdout
    forced = rj.train_recommender(s, shop_dir, as_of=late.as_of - timedelta(days=7), force=True)
    assert (forced.version, forced.promoted) == (3, True)
    again = jobs.TRAINERS["recommender"](s, shop_dir, False)
    run = mlflow.get_run(again.run_id)
    assert run.data.tags["champion_compared_version"] == "3"
    champion_value = run.data.metrics["champion_test_recall_at_10"]
    from training.registry import load_version

    events, ids = _events_and_ids(shop_dir)
    nbo = load_version("recommender", 3).unwrap_python_model().nbo
    assert champion_value == pytest.approx(
        rj.champion_recall(nbo, events, ids, again.as_of, s.recommender_test_days, ["purchase"])
    )
    beats = again.metrics["test_recall_at_10"] > champion_value
    assert again.promoted is beats
    assert again.promotion_reason.startswith("beats champion" if beats else "does not beat")


def test_worse_recommender_on_the_same_holdout_stays_challenger(
    results, shop_dir: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    champion = results["recommender"]
    # same data and settings, so the same test period; only popularity as candidate source
    monkeypatch.setattr(
        rj, "evaluate_split", functools.partial(rj.evaluate_split, sources=("popular",))
    )
    worse = jobs.TRAINERS["recommender"](settings, shop_dir, False)
    assert worse.test_period == champion.test_period
    assert worse.metrics["test_recall_at_10"] < champion.metrics["test_recall_at_10"]
    assert (worse.version, worse.promoted) == (2, False)
    assert worse.promotion_reason.startswith("does not beat champion")
    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    alias = client.get_model_version_by_alias
    assert int(alias("klantbeeld-recommender", "champion").version) == 1
    assert int(alias("klantbeeld-recommender", "challenger").version) == 2

    forced = jobs.TRAINERS["recommender"](settings, shop_dir, True)
    assert (forced.version, forced.promoted, forced.promotion_reason) == (3, True, "forced")
    assert int(alias("klantbeeld-recommender", "champion").version) == 3
