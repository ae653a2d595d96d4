"""The scores API serves the CLV columns of the batch scores beside the model scores."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from fastapi.testclient import TestClient

from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.deps import get_scores
from serving.api.keys import KeyStore
from serving.api.scores import ScoreIndex

SCORES = pa.table(
    {
        "customer_id": ["C2", "C1", "C3"],
        "churn_score": [0.1, 0.2, 0.3],
        "churn_model_version": pa.array([7, 7, 7], pa.int32()),
        "churn_top_up": [["recency_days"], [], []],
        "churn_top_down": [[], [], []],
        "expected_purchases_90d": pa.array([1.5, None, 0.25], pa.float64()),
        "clv_90d": pa.array([45.0, None, 5.5], pa.float64()),
        "clv_model_version": pa.array([2, 2, 2], pa.int32()),
    }
)


def _client(tmp_path: Path, table: pa.Table) -> TestClient:
    pq.write_table(table, tmp_path / "scores.parquet")
    scores = ScoreIndex.open(tmp_path / "scores.parquet", tmp_path / "cache")
    app = create_app(Settings(home=tmp_path / "home"))
    app.dependency_overrides[get_scores] = lambda: scores
    key = KeyStore(app.state.settings.resolved_api_keys_file).create(frozenset({"scores:read"}))
    return TestClient(app, headers={"X-API-Key": key})


def test_scores_answer_holds_the_clv_values(tmp_path: Path) -> None:
    with _client(tmp_path, SCORES) as client:
        body = client.get("/v1/customers/C2/scores").json()
        assert body["values"] == {"expected_purchases_90d": 1.5, "clv_90d": 45.0}
        assert body["scores"]["churn"]["score"] == 0.1
        assert "clv" not in body["scores"]  # a value, not a probability
        no_orders = client.get("/v1/customers/C1/scores").json()
        assert no_orders["values"] == {"expected_purchases_90d": None, "clv_90d": None}
        assert client.get("/v1/customers/C9/scores").status_code == 404


def test_without_clv_columns_the_key_is_absent(tmp_path: Path) -> None:
    plain = SCORES.drop_columns(["expected_purchases_90d", "clv_90d", "clv_model_version"])
    with _client(tmp_path, plain) as client:
        body = client.get("/v1/customers/C3/scores").json()
    assert "values" not in body and body["scores"]["churn"]["score"] == 0.3
