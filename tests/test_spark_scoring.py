"""Batch scoring on Spark (``mlflow.pyfunc.spark_udf``) equals local batch scoring.

A conversion-intent champion is trained on a small generated shop; the local engine
(:func:`training.batch_score.score_customers`) and the Spark engine
(:func:`training.batch_score_spark.score_customers_spark`, one ``local[1]`` session)
score the same customers at the same T, and their score columns agree.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from spark_fixtures import requires_java
from typer.testing import CliRunner

from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings
from training.backtest import BacktestConfig

N_CUSTOMERS = 2000
AS_OF = datetime(2026, 10, 15)
CONFIG = BacktestConfig(n_train=1, step_days=28, num_threads=1)

pytestmark = [pytest.mark.slow, requires_java]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    from features.demo_shop import generate_demo_shop
    from training.scoring_job import CONVERSION_INTENT, run_scoring_job

    shop = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(shop, n_customers=N_CUSTOMERS, seed=7, days=150)
    settings = Settings(home=tmp_path_factory.mktemp("home"), seed=3, threads=1)
    result = run_scoring_job(CONVERSION_INTENT, settings, shop, config=CONFIG, pit_check=False)
    assert result.promoted
    return settings, shop


def test_spark_udf_scores_equal_local_scores(spark, trained, tmp_path: Path) -> None:
    from training.batch_score import score_customers
    from training.batch_score_spark import score_customers_spark

    settings, shop = trained
    local = pq.read_table(
        score_customers(
            settings,
            AS_OF,
            data=shop,
            out=tmp_path / "local.parquet",
            models=("conversion_intent",),
        )  # fmt: skip
    ).sort_by("customer_id")
    on_spark = pq.read_table(
        score_customers_spark(
            settings, AS_OF, data=shop, out=tmp_path / "spark.parquet", spark=spark
        )  # fmt: skip
    )
    assert on_spark.column_names == [
        "customer_id",
        "conversion_intent_score",
        "conversion_intent_model_version",
        "as_of",
    ]
    assert on_spark.num_rows == local.num_rows > 1000
    assert on_spark.column("customer_id").equals(local.column("customer_id"))
    a = local.column("conversion_intent_score").to_numpy()
    b = on_spark.column("conversion_intent_score").to_numpy()
    assert np.std(a) > 0.01  # real, varied scores: the comparison means something
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12)
    assert on_spark.column("conversion_intent_model_version").to_pylist() == (
        local.column("conversion_intent_model_version").to_pylist()
    )
    assert on_spark.column("as_of").equals(local.column("as_of"))


def test_score_cli_engine_spark(spark, trained, tmp_path: Path, monkeypatch) -> None:
    from klantbeeld.cli import app

    settings, shop = trained
    monkeypatch.setenv("KLANTBEELD_HOME", str(settings.home))
    out = tmp_path / "cli.parquet"
    result = CliRunner().invoke(
        app, ["score", "--as-of", "2026-10-15", "--data", str(shop), "--engine", "spark",
              "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column_names == [
        "customer_id", "conversion_intent_score", "conversion_intent_model_version", "as_of",
    ]  # fmt: skip


def test_spark_engine_refuses_models_it_cannot_score(trained) -> None:
    from training.batch_score_spark import score_customers_spark

    settings, shop = trained
    with pytest.raises(ValueError, match="clv"):
        score_customers_spark(settings, AS_OF, data=shop, models=("conversion_intent", "clv"))
    with pytest.raises(NotTrainedError, match="churn"):
        score_customers_spark(settings, AS_OF, data=shop, models=("churn",))
