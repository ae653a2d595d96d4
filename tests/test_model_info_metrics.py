"""``klantbeeld_model_info{model,version,alias} 1`` at ``GET /metrics``: one series per
served model version, rebuilt by ``POST /v1/admin/reload`` (a version no longer served
disappears); the recommender's version is the registry champion it was loaded from."""

from __future__ import annotations

import re
import shutil

import mlflow
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_api import keyed_client, served  # noqa: F401  (fixture)

from features import contract as c
from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.metrics import MODEL_INFO, render_model_info
from serving.api.model_info import ModelInfo, recommender_model, score_models
from training.registry import registered_model_name
from training.tracking import configure_mlflow

_SERIES = re.compile(rf'^{MODEL_INFO}\{{model="([^"]*)",version="([^"]*)",alias="([^"]*)"\}} 1$')


def _model_info(text: str) -> set[tuple[str, str, str]]:
    out = set()
    for line in text.splitlines():
        m = _SERIES.match(line)
        if m:
            out.add(m.groups())
    return out


@pytest.fixture()
def home_copy(served, tmp_path):  # noqa: F811
    settings, customers, _ = served
    shutil.copytree(settings.home, tmp_path / "home")
    return settings.model_copy(update={"home": tmp_path / "home"}), customers


def test_reload_with_a_new_scores_version_changes_the_label(home_copy):
    settings, customers = home_copy
    with keyed_client(create_app(settings)) as client:
        r = client.get("/metrics")
        assert r.status_code == 200
        assert f"# TYPE {MODEL_INFO} gauge" in r.text
        assert _model_info(r.text) == {
            ("churn", "1", "champion"),
            ("recommender", "unregistered", "none"),  # trained without MLflow
        }
        ids = customers[c.CUSTOMER_ID].tolist()
        table = pa.table(
            {
                c.CUSTOMER_ID: ids,
                "churn_score": np.full(len(ids), 0.3),
                "churn_model_version": pa.array([4] * len(ids), pa.int32()),
            }
        )
        pq.write_table(table, settings.home / "scores" / "customer_scores_as_of=2026-11-01.parquet")
        assert client.post("/v1/admin/reload").status_code == 200
        assert _model_info(client.get("/metrics").text) == {
            ("churn", "4", "champion"),
            ("recommender", "unregistered", "none"),
        }


def test_score_models_lists_every_distinct_version_and_skips_nulls(tmp_path):
    path = tmp_path / "customer_scores_as_of=2026-11-01.parquet"
    pq.write_table(
        pa.table(
            {
                c.CUSTOMER_ID: ["a", "b", "c", "d"],
                "churn_score": [0.1, 0.2, 0.3, 0.4],
                "churn_model_version": pa.array([3, 5, 3, None], pa.int32()),
                "clv_model_version": pa.array([None, None, None, None], pa.int64()),
                "conversion_intent_model_version": pa.array([2, 2, 2, 2], pa.int64()),
            }
        ),
        path,
    )
    assert score_models(path) == [
        ModelInfo("churn", "3", "champion"),
        ModelInfo("churn", "5", "champion"),
        ModelInfo("conversion_intent", "2", "champion"),
    ]


def test_render_escapes_label_values_and_deduplicates():
    text = render_model_info(
        [ModelInfo('we"ird\\', "1", "champion"), ModelInfo("churn", "2", "champion")] * 2
    )
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        f'{MODEL_INFO}{{model="churn",version="2",alias="champion"}} 1',
        f'{MODEL_INFO}{{model="we\\"ird\\\\",version="1",alias="champion"}} 1',
    ]
    assert render_model_info([]).splitlines()[-1] == f"# TYPE {MODEL_INFO} gauge"


def test_recommender_version_is_the_champion_it_was_loaded_from(tmp_path):
    settings = Settings(home=tmp_path / "home")
    # no MLflow store yet: unregistered, and no store is created by asking
    assert recommender_model(settings) == ModelInfo("recommender", "unregistered", "none")
    assert not (tmp_path / "home" / "mlflow.db").exists()

    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    name = registered_model_name("recommender")
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=str(tmp_path / "artifact"))
    client.set_registered_model_alias(name, "champion", "2")
    # a champion exists but serving has not downloaded it: the local model was served
    assert recommender_model(settings).version == "unregistered"
    cache = settings.home / "cache" / "recommender-v2"
    cache.mkdir(parents=True)
    (cache / "params.json").write_text("{}")
    assert recommender_model(settings) == ModelInfo("recommender", "2", "champion")
