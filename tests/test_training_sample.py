"""Customer sampling of the binary training job and snapshots limited to some tables.

A 2,000-customer, 150-day demo shop; the conversion-intent task (7-day horizon) so the
backtest fits in that history.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features import feature_groups as fg
from features.snapshot import build_snapshot
from klantbeeld.settings import Settings
from models.inputs import model_inputs
from training.backtest import BacktestConfig, plan_backtest
from training.scoring_job import (
    CHURN,
    CONVERSION_INTENT,
    assemble,
    check_point_in_time,
    data_range,
    oracle_for,
    prepare_shop,
    run_scoring_job,
    sample_customers,
)

N_CUSTOMERS = 2000
CAP = 600
CONFIG = BacktestConfig(
    n_train=2, step_days=14, num_threads=1, max_customers=CAP, pit_customers=300
)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features.demo_shop import generate_demo_shop

    out = tmp_path_factory.mktemp("demo") / "shop"
    generate_demo_shop(out, n_customers=N_CUSTOMERS, seed=11, days=150)
    return out


@pytest.fixture(scope="module")
def shop(shop_dir: Path):
    from features.shop import open_shop

    return open_shop(shop_dir, threads=1)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(home=tmp_path_factory.mktemp("home"), seed=42)


@pytest.fixture(scope="module")
def plan(shop):
    start, end = data_range(shop)
    return plan_backtest(end, 7, CONFIG, data_start=start)


def _ids(table) -> set[str]:
    return set(table.select(c.CUSTOMER_ID).to_pyarrow().column(0).to_pylist())


def _rows_by_customer(table) -> pd.Series:
    df = table.group_by(c.CUSTOMER_ID).aggregate(n=table.count()).to_pandas()
    return df.set_index(c.CUSTOMER_ID)["n"].sort_index()


def test_sample_is_seeded_deterministic_and_nested(shop) -> None:
    a = sample_customers(shop, CAP, seed=42)
    ids = _ids(a.shop.customers)
    assert (a.customers_total, a.customers_sampled, a.sampled) == (N_CUSTOMERS, CAP, True)
    assert len(ids) == CAP
    assert _ids(sample_customers(shop, CAP, seed=42).shop.customers) == ids
    other = _ids(sample_customers(shop, CAP, seed=43).shop.customers)
    assert len(other) == CAP and other != ids
    # a smaller sample is part of a larger one (the rule is a ranking by hash)
    assert _ids(sample_customers(shop, CAP // 2, seed=42).shop.customers) < ids


def test_sample_keeps_every_row_of_the_sampled_customers_only(shop) -> None:
    s = sample_customers(shop, CAP, seed=42).shop
    ids = _ids(s.customers)
    for name in (c.EVENTS, c.SENDS):
        full, part = _rows_by_customer(shop.table(name)), _rows_by_customer(s.table(name))
        assert set(part.index) <= ids
        expected = full[full.index.isin(ids)]
        pd.testing.assert_series_equal(part, expected)
        assert part.sum() < full.sum()
    assert s.items is shop.items


def test_no_sample_at_or_below_the_cap(shop) -> None:
    for cap in (N_CUSTOMERS, 250_000):
        s = sample_customers(shop, cap, seed=42)
        assert s.shop is shop
        assert (s.customers_total, s.customers_sampled, s.sampled) == (
            N_CUSTOMERS,
            N_CUSTOMERS,
            False,
        )
    with pytest.raises(ValueError, match="max_customers"):
        BacktestConfig(max_customers=10)


def test_every_cutoff_uses_the_same_sample(shop, plan, settings) -> None:
    s = sample_customers(shop, CAP, seed=settings.seed).shop
    ids = _ids(s.customers)
    created = shop.customers.to_pandas().set_index(c.CUSTOMER_ID)[c.CREATED_AT]
    full_frames = assemble(shop, CONVERSION_INTENT, plan, settings)
    frames = assemble(s, CONVERSION_INTENT, plan, settings)
    for t in plan.cutoffs:
        snap = build_snapshot(s, t, tables=(fg.CUSTOMER,))
        # the sampled customers who exist at t, at every cutoff
        assert set(snap.customer[c.CUSTOMER_ID]) == {i for i in ids if created[i] < t}
    for split in ("train", "valid", "test"):
        part, full = getattr(frames, split), getattr(full_frames, split)
        assert set(part[c.CUSTOMER_ID]) <= ids
        assert 0 < len(part) < len(full)
        # the sampled rows are the full run's rows of the same customers
        assert len(part) == full[c.CUSTOMER_ID].isin(ids).sum()
        # the labels do not depend on the sample
        key = [c.CUSTOMER_ID, "cutoff"] if split == "train" else [c.CUSTOMER_ID]
        merged = part[[*key, "label"]].merge(full[[*key, "label"]], on=key)
        assert len(merged) == len(part)
        assert (merged["label_x"] == merged["label_y"]).all()
    check_point_in_time(s, plan.train[-1])  # the sample passes the point-in-time check


def test_snapshot_tables_subset(shop, plan) -> None:
    t = plan.train[-1]
    full = build_snapshot(shop, t)
    part = build_snapshot(shop, t, tables=(fg.CUSTOMER, fg.CUSTOMER_ITEM))
    pd.testing.assert_frame_equal(part.customer, full.customer)
    pd.testing.assert_frame_equal(part.customer_item, full.customer_item)
    pd.testing.assert_frame_equal(model_inputs(part), model_inputs(full))
    assert len(full.customer_category) > 0
    assert len(part.customer_category) == 0
    assert list(part.customer_category.columns) == list(full.customer_category.columns)
    assert (part.customer_category.dtypes == full.customer_category.dtypes).all()
    assert part.manifest == full.manifest
    with pytest.raises(ValueError, match="tables must be among"):
        build_snapshot(shop, t, tables=("orders",))


def test_job_logs_the_sample(shop_dir: Path, settings: Settings) -> None:
    prepared = prepare_shop(shop_dir, settings, CONFIG)
    assert prepared.sample.customers_sampled == CAP
    other = BacktestConfig(n_train=2, step_days=14, max_customers=CAP + 1)
    with pytest.raises(ValueError, match="prepared was made for other"):
        run_scoring_job(CONVERSION_INTENT, settings, shop_dir, config=other, prepared=prepared)
    r = run_scoring_job(CONVERSION_INTENT, settings, shop_dir, config=CONFIG, prepared=prepared)
    params = mlflow.get_run(r.run_id).data.params
    assert params["customers_total"] == str(N_CUSTOMERS)
    assert params["customers_sampled"] == str(CAP)
    assert params["max_customers"] == str(CAP)
    assert params["pit_customers"] == "300"  # the check ran on a nested sample
    assert r.metrics["test_n"] < CAP
    assert r.metrics["oracle_coverage"] == 1.0  # the oracle covers the sampled customers


@pytest.mark.parametrize("task", [CONVERSION_INTENT, CHURN], ids=lambda t: t.name)
def test_oracle_on_some_customers_equals_the_full_oracle(
    task, shop_dir, shop, plan, settings
) -> None:
    full = oracle_for(task, shop_dir, plan.test, settings).set_index(c.CUSTOMER_ID)["p"]
    ids = full.index[::7].to_numpy()
    part = oracle_for(task, shop_dir, plan.test, settings, customer_ids=ids)
    assert list(part[c.CUSTOMER_ID]) == list(ids)
    np.testing.assert_allclose(part["p"].to_numpy(), full.loc[ids].to_numpy(), rtol=0, atol=1e-12)
    # with the purchases taken from a customer sample that holds those customers
    sampled = sample_customers(shop, CAP, seed=42).shop
    ids = np.array(sorted(_ids(sampled.customers) & set(full.index)))
    part = oracle_for(task, shop_dir, plan.test, settings, customer_ids=ids, shop=sampled)
    assert list(part[c.CUSTOMER_ID]) == list(ids)
    np.testing.assert_allclose(part["p"].to_numpy(), full.loc[ids].to_numpy(), rtol=0, atol=1e-12)
