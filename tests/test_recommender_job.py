"""The recommender job on a small demo shop: time split, metrics, save/load, candidates."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.demo_shop.writer import generate_demo_shop
from klantbeeld.settings import Settings
from models.recommender.next_best import NextBestOffers
from training.recommender_job import target_matrix, train_recommender


def small_settings(home: Path) -> Settings:
    """A fast recommender (few factors, iterations and ranker rounds) under ``home``."""
    return Settings(
        home=home,
        recommender_als_factors=8,
        recommender_als_iterations=5,
        recommender_ranker_estimators=30,
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shop")
    generate_demo_shop(out, n_customers=600, seed=3, days=365, n_items=120)
    return out


@pytest.fixture(scope="module")
def result(shop, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    settings = small_settings(home)
    return train_recommender(settings, shop, log_to_mlflow=False, out=home / "nbo"), settings


def test_metrics_and_time_split(result):
    res, _ = result
    m = res.metrics
    for name in (
        "test_recall_at_10",
        "test_ndcg_at_10",
        "test_precision_at_4",
        "test_coverage",
        "baseline_popularity_recall_at_10",
        "baseline_als_recall_at_10",
        "source_buy_again_recall_at_10",
        "source_recently_viewed_recall_at_10",
    ):
        assert 0.0 <= m[name] <= 1.0, name
    # last event on 2026-10-31: the test period starts at midnight 14 days before
    assert res.as_of == datetime(2026, 10, 17)
    assert res.n_test == m["n_test_users"] > 0
    # the final ranking keeps the better of blend / re-ranker chosen on validation
    assert m["test_recall_at_10"] > m["baseline_popularity_recall_at_10"]


def test_target_matrix_reads_only_the_period():
    ev = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "a", "b", "b"],
            c.ITEM_ID: ["x", "y", "x", "x"],
            c.EVENT_TYPE: [c.PURCHASE, c.PURCHASE, c.PURCHASE, c.PRODUCT_VIEW],
            c.TS: pd.to_datetime(
                ["2026-01-01", "2026-01-02 00:00:01", "2026-01-02", "2026-01-02"], format="ISO8601"
            ),
        }
    )
    from models.recommender.interactions import IdMap

    ids = IdMap(pd.Index(["a", "b"]), pd.Index(["x", "y"]))
    t = target_matrix(ev, ids, datetime(2026, 1, 1), datetime(2026, 1, 2), [c.PURCHASE])
    # (T, T+H]: the purchase at T is out, the one at T+H in, the one after out, views out
    np.testing.assert_array_equal(t.toarray(), [[0, 0], [1, 0], [0, 0]])


def test_saved_offers_give_identical_candidates_and_unknown_customers_get_popular(result):
    res, _ = result
    nbo = NextBestOffers.load(res.model_dir)
    known = list(nbo.ids_.users[:3])
    cands = nbo.candidates(known + ["nobody"], n_per_source=10)
    assert set(cands.columns[:5]) == {c.CUSTOMER_ID, c.ITEM_ID, "score", "source", "reason"}
    unknown = cands[cands[c.CUSTOMER_ID] == "nobody"]
    assert len(unknown) == 10
    assert set(unknown["source"]) <= {"popular", "popular_in_segment"}
    assert set(unknown["reason"]) == {"popular_in:all"}
    ranked = nbo.rank(cands)
    assert list(pd.unique(ranked[c.CUSTOMER_ID])) == known + ["nobody"]
    for _, g in ranked.groupby(c.CUSTOMER_ID):
        assert (np.diff(g["score"].to_numpy()) <= 0).all()
    assert (
        ranked["reason"]
        .str.match(r"^(for_you|bought_before|viewed|popular_in:.+|similar_to:.+)$")
        .all()
    )


def test_mlflow_run_goes_to_the_project_store(shop, tmp_path, monkeypatch):
    """On a fresh store nothing lands in ./mlruns of the working directory."""
    import mlflow

    from training.tracking import experiment_name

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = small_settings(tmp_path / "home")
    res = train_recommender(settings, shop, use_repurchase_model=False)
    assert list(cwd.iterdir()) == []
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment_name("recommender"))
    root = settings.artifact_root.as_uri()
    assert exp.artifact_location.startswith(root)
    run = client.get_run(res.run_id)
    assert run.info.artifact_uri.startswith(root)
    assert run.info.experiment_id == exp.experiment_id
    assert res.version == 1 and res.promoted
    assert run.data.tags["test_period"] == "2026-10-17/2026-10-31"


def test_logged_recommender_is_portable(shop, tmp_path):
    """Signature, pinned requirements without klantbeeld, and the code it needs."""
    import mlflow

    settings = small_settings(tmp_path / "home")
    res = train_recommender(settings, shop, use_repurchase_model=False)
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{res.run_id}/model"))
    info = mlflow.models.get_model_info(str(local))
    assert info.signature.inputs.input_names() == [c.CUSTOMER_ID]
    assert info.signature.outputs.input_names() == [
        c.CUSTOMER_ID,
        c.ITEM_ID,
        "score",
        "source",
        "reason",
    ]
    assert info.signature.params.to_dict()[0]["name"] == "n"
    reqs = (local / "requirements.txt").read_text().split()
    assert not [r for r in reqs if r.split("==")[0] == "klantbeeld"]
    assert {"implicit", "lightgbm", "mlflow"} <= {r.split("==")[0] for r in reqs}
    assert {p.name for p in (local / "code").iterdir()} == {"models", "features", "klantbeeld"}
    model = mlflow.pyfunc.load_model(f"models:/klantbeeld-recommender/{res.version}")
    got = model.predict(pd.DataFrame({c.CUSTOMER_ID: ["C0000001", "nobody"]}), params={"n": 3})
    assert got.groupby(c.CUSTOMER_ID).size().to_dict() == {"C0000001": 3, "nobody": 3}
