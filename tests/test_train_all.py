"""`train_model("all")` trains conversion intent and churn on one prepared shop.

An 800-customer, 120-day demo shop with a 14-day churn horizon (so the backtest plan of
both binary scores fits); the repurchase and recommender trainers are replaced by
recorders (they are not under test here).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mlflow
import pytest

from klantbeeld.settings import Settings
from training import jobs
from training import scoring_job as sj
from training.backtest import BacktestConfig

N_CUSTOMERS = 800


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(out, n_customers=N_CUSTOMERS, seed=5, days=120)
    return out


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("home"),
        seed=42,
        churn_horizon_days=14,
        churn_population_days=60,
        threads=1,
    )


@pytest.fixture
def prepared_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Count :func:`prepare_shop` calls (the real one runs)."""
    calls: list[Path] = []
    real = sj.prepare_shop

    def counting(data, settings, config=None):
        calls.append(Path(data))
        return real(data, settings, config)

    monkeypatch.setattr(sj, "prepare_shop", counting)
    return calls


@pytest.fixture
def jobs_run(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """Record each scoring job's task and ``prepared``; run the real job, shortened.

    One training cutoff and no point-in-time check keep the file fast; the customer cap
    is unchanged, so a shared ``prepared`` is still accepted.
    """
    runs: list[tuple[str, object]] = []
    real = sj.run_scoring_job

    def shortened(task, settings, data, config=None, **kw):
        runs.append((task.name, kw.get("prepared")))
        config = dataclasses.replace(config or BacktestConfig(), n_train=1, num_threads=1)
        return real(task, settings, data, config=config, pit_check=False, **kw)

    monkeypatch.setattr(sj, "run_scoring_job", shortened)
    return runs


def test_train_all_prepares_the_shop_once_for_both_binary_models(
    shop_dir: Path, settings: Settings, prepared_calls: list[Path], jobs_run, monkeypatch
) -> None:
    others: list[tuple[str, Path, bool]] = []
    for name in ("repurchase_timing", "recommender", "clv"):
        monkeypatch.setitem(
            jobs.TRAINERS, name, lambda s, d, f, name=name: others.append((name, d, f)) or name
        )
    results = jobs.train_model("all", settings, shop_dir)
    assert prepared_calls == [shop_dir]
    assert [name for name, _ in jobs_run] == ["conversion_intent", "churn"]
    shared = jobs_run[0][1]
    assert isinstance(shared, sj.PreparedShop) and jobs_run[1][1] is shared
    assert list(results) == list(jobs.TRAINERS)
    assert others == [
        ("repurchase_timing", shop_dir, False),
        ("recommender", shop_dir, False),
        ("clv", shop_dir, False),
    ]
    assert results["repurchase_timing"] == "repurchase_timing"
    for name in ("conversion_intent", "churn"):
        r = results[name]
        assert r.model == name
        # the shared preparation is not charged to either job
        assert (r.metrics["open_seconds"], r.metrics["sample_seconds"]) == (0.0, 0.0)
        params = mlflow.get_run(r.run_id).data.params
        assert params["customers_total"] == params["customers_sampled"] == str(N_CUSTOMERS)
    assert results["churn"].test_period != results["conversion_intent"].test_period


def test_single_model_job_prepares_its_own_shop(
    shop_dir: Path, settings: Settings, prepared_calls: list[Path], monkeypatch
) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(sj, "run_scoring_job", lambda *a, **kw: calls.append((a, kw)) or "ran")
    assert jobs.train_model("churn", settings, shop_dir, force=True) == "ran"
    # no shop prepared outside the job: run_scoring_job opens and samples it itself
    assert calls == [((sj.CHURN, settings, shop_dir), {"force": True})]
    assert prepared_calls == []


def test_train_binary_models_refuses_unknown_names(shop_dir: Path, settings: Settings) -> None:
    with pytest.raises(ValueError, match="names must be among"):
        jobs.train_binary_models(settings, shop_dir, ["conversion_intent", "recommender"])
