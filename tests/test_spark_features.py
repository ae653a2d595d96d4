"""The Spark feature backend computes the same snapshot as DuckDB (issue 16 item 1).

One local Spark session for the module (``local[1]``, 2 shuffle partitions, no UI); a
small generated shop; every column of the three snapshot tables compared, rows sorted
by their keys, floats within a relative 1e-9.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feature_fixtures import T, hand_worked_events, write_shop
from spark_fixtures import requires_java

from features import feature_groups as fg
from features.backend import SparkBackend, backend_of, get_backend
from features.shop import open_shop
from features.snapshot import build_snapshot

N_CUSTOMERS = 300
AS_OF = datetime(2026, 10, 15)

pytestmark = requires_java


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(out, n_customers=N_CUSTOMERS, seed=5, days=150)
    return out


@pytest.fixture(scope="module")
def snapshots(spark, shop_dir: Path):
    now = datetime(2030, 1, 1)
    duck = build_snapshot(open_shop(shop_dir, threads=1, now=now), AS_OF)
    shop = open_shop(shop_dir, threads=1, now=now, backend="pyspark")
    assert isinstance(backend_of(shop), SparkBackend)
    return duck, build_snapshot(shop, AS_OF)


def _compare(duck: pd.DataFrame, spark: pd.DataFrame, keys: list[str]) -> None:
    assert list(spark.columns) == list(duck.columns)
    assert len(spark) == len(duck)
    duck = duck.sort_values(keys).reset_index(drop=True)
    spark = spark.sort_values(keys).reset_index(drop=True)
    for col in duck.columns:
        a, b = duck[col], spark[col]
        assert a.dtype == b.dtype, f"{col}: dtype {b.dtype} on Spark, {a.dtype} on DuckDB"
        if pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-9, err_msg=col)
        else:
            assert a.astype(object).tolist() == b.astype(object).tolist(), col


def test_spark_customer_table_equals_duckdb(snapshots) -> None:
    duck, spark = snapshots
    # the small shop exercises the table: buyers, non-buyers, several lifecycle stages
    assert len(duck.customer) > 100
    assert (duck.customer["orders_total"] >= 2).sum() > 10
    assert duck.customer["lifecycle_stage"].nunique() >= 3
    _compare(duck.customer, spark.customer, list(fg.ENTITY_KEYS[fg.CUSTOMER]))


@pytest.mark.parametrize("entity", [fg.CUSTOMER_CATEGORY, fg.CUSTOMER_ITEM])
def test_spark_cycle_tables_equal_duckdb(snapshots, entity: str) -> None:
    duck, spark = snapshots
    assert len(duck.table(entity)) > 20
    _compare(duck.table(entity), spark.table(entity), list(fg.ENTITY_KEYS[entity]))


def test_arrow_copy_gives_the_same_customer_table(spark, monkeypatch, tmp_path: Path) -> None:
    # the copy used with a cluster master (rows through the driver as Arrow), on the
    # hand-worked shop of the feature tests
    import features.snapshot_run as run

    shop_dir = write_shop(tmp_path, hand_worked_events())
    now = datetime(2025, 1, 1)
    duck = build_snapshot(open_shop(shop_dir, now=now), T, tables=[fg.CUSTOMER]).customer
    arrow = SparkBackend(spark, copy="arrow")
    monkeypatch.setattr(run, "backend_of", lambda shop: arrow)
    shop = open_shop(shop_dir, now=now, backend="pyspark")
    on_spark = build_snapshot(shop, T, tables=[fg.CUSTOMER]).customer
    assert all(v.startswith("kb") for v in arrow._views[shop.con].values())
    _compare(duck, on_spark, list(fg.ENTITY_KEYS[fg.CUSTOMER]))
    with pytest.raises(ValueError, match="copy must be"):
        SparkBackend(spark, copy="csv")


def test_unknown_backend_is_refused() -> None:
    from klantbeeld.errors import ConfigError

    with pytest.raises(ConfigError, match="KLANTBEELD_FEATURE_BACKEND.*duckdb, pyspark"):
        get_backend("polars")
