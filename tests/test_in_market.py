"""In-market segments and the repurchase table used by batch scoring."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from features.shop import open_shop
from klantbeeld.settings import Settings
from models.repurchase_timing import RepurchaseTimingModel
from serving.in_market import in_market, parse_iso_week
from training.repurchase_job import labelled_pairs
from training.repurchase_scores import RepurchaseScores, repurchase_table

AS_OF = datetime(2026, 11, 2)  # a Monday: ISO week 2026-W45 is days 0..7 after it


def _scores() -> RepurchaseScores:
    pairs = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "a", "b"],
            c.ITEM_ID: ["coffee", "tea", "coffee"],
            "p_week_1": [0.5, 0.1, 0.0],
            "p_week_2": [0.25, 0.2, 0.6],
            "p_none": [0.25, 0.7, 0.4],
        }
    )
    pairs["p_within_horizon"] = 1.0 - pairs["p_none"]
    pairs["expected_date"] = pd.to_datetime(["2026-11-09", "2026-11-12", "2026-11-12"])
    customers = pd.DataFrame({c.CUSTOMER_ID: ["a", "b"]})
    return RepurchaseScores(AS_OF, "item", pairs, customers, "local")


def test_parse_iso_week() -> None:
    assert parse_iso_week("2026-W47") == (date(2026, 11, 16), date(2026, 11, 22))
    assert parse_iso_week("2027-w01") == (date(2027, 1, 4), date(2027, 1, 10))
    with pytest.raises(ValueError, match="week must look like"):
        parse_iso_week("2026-47")


def test_in_market_reads_the_week_from_the_distribution(tmp_path) -> None:
    settings = Settings(home=tmp_path)
    week1 = in_market(settings, "2026-W45", 0.1, scores=_scores(), consent=None)
    assert week1[[c.CUSTOMER_ID, c.ITEM_ID]].values.tolist() == [["a", "coffee"], ["a", "tea"]]
    np.testing.assert_allclose(week1["p_in_market_week"], [0.5, 0.1])
    week2 = in_market(settings, "2026-W46", 0.25, scores=_scores(), consent=None)
    assert week2[[c.CUSTOMER_ID, c.ITEM_ID]].values.tolist() == [["b", "coffee"], ["a", "coffee"]]
    np.testing.assert_allclose(week2["p_in_market_week"], [0.6, 0.25])
    assert list(week2.columns) == [
        c.CUSTOMER_ID,
        c.ITEM_ID,
        "p_in_market_week",
        "expected_date",
        "p_within_horizon",
    ]
    with pytest.raises(ValueError, match="outside the forecast horizon"):
        in_market(settings, "2026-W48", 0.1, scores=_scores(), consent=None)
    with pytest.raises(ValueError, match="min_prob"):
        in_market(settings, "2026-W45", 1.5, scores=_scores(), consent=None)


def test_in_market_week_straddling_the_model_weeks() -> None:
    scores = _scores()
    # T on a Wednesday: ISO week 2026-W45 (Mon 2 .. Sun 8 Nov) covers days -2..5 after T,
    # i.e. the first 5/7 of model week 1 only.
    shifted = RepurchaseScores(datetime(2026, 11, 4), "item", scores.pairs, scores.customers, "x")
    out = in_market(Settings(), "2026-W45", 0.0, scores=shifted, consent=None)
    got = dict(zip(out[c.ITEM_ID] + out[c.CUSTOMER_ID], out["p_in_market_week"], strict=True))
    assert got["coffeea"] == pytest.approx(0.5 * 5 / 7)
    assert got["coffeeb"] == pytest.approx(0.0)


# -- end to end on a tiny shop ---------------------------------------------------------------
def _tiny_shop(path) -> None:
    rng = np.random.default_rng(0)
    n = 80
    ids = [f"c{i:03d}" for i in range(n)]
    customers = pd.DataFrame(
        {
            c.CUSTOMER_ID: ids,
            c.CREATED_AT: pd.Timestamp("2024-01-01"),
            c.CONSENT_EMAIL: [i % 2 == 0 for i in range(n)],
        }
    )
    items = pd.DataFrame(
        {
            c.ITEM_ID: ["coffee", "tea"],
            c.TITLE: ["Coffee", "Tea"],
            c.CATEGORY: ["food", "food"],
            c.REPURCHASABLE: [True, True],
        }
    )
    rows = []
    for cid in ids:
        for item, cycle in (("coffee", 14.0), ("tea", 28.0)):
            t = pd.Timestamp("2024-01-02") + pd.Timedelta(days=float(rng.uniform(0, cycle)))
            k = 0
            while t < pd.Timestamp("2024-06-30"):
                rows.append(
                    {
                        c.CUSTOMER_ID: cid,
                        c.TS: t,
                        c.EVENT_TYPE: c.PURCHASE,
                        c.ITEM_ID: item,
                        c.QUANTITY: 1.0,
                        c.VALUE: 5.0,
                        c.ORDER_ID: f"{cid}-{item}-{k}",
                    }
                )
                t += pd.Timedelta(days=float(cycle * rng.uniform(0.8, 1.2)))
                k += 1
    path.mkdir()
    customers.to_parquet(path / "customers.parquet", index=False)
    items.to_parquet(path / "items.parquet", index=False)
    pd.DataFrame(rows).to_parquet(path / "events.parquet", index=False)


def test_repurchase_table_and_in_market_end_to_end(tmp_path) -> None:
    shop_dir = tmp_path / "shop"
    _tiny_shop(shop_dir)
    settings = Settings(home=tmp_path / "home", data_dir=shop_dir, threads=1)
    shop = open_shop(shop_dir, threads=1)
    train = pd.concat(
        [labelled_pairs(shop, datetime(2024, m, 1), 4, "item") for m in (3, 4)],
        ignore_index=True,
    )
    assert len(train) == 2 * 80 * 2  # every customer holds both pairs at both cutoffs
    ids = [c.CUSTOMER_ID, c.ITEM_ID, "days_to_next", "event_week"]
    # Coffee (14-day cycle) is always bought again within 4 weeks.
    assert (train.loc[train[c.ITEM_ID] == "coffee", "event_week"] > 0).all()
    model = RepurchaseTimingModel(
        weeks=4, n_estimators=30, min_child_samples=5, random_state=0, n_jobs=1
    ).fit(train.drop(columns=ids), train["event_week"])

    scores = repurchase_table(settings, "2024-05-06", shop=shop, model=model, level="item")
    assert scores.as_of == datetime(2024, 5, 6)
    assert len(scores.pairs) == 160 and len(scores.customers) == 80
    assert (
        scores.pairs[[f"p_week_{w}" for w in range(1, 5)] + ["p_none"]]
        .sum(axis=1)
        .round(9)
        .eq(1.0)
        .all()
    )
    # The first order of anything comes no later than the first of each pair.
    merged = scores.pairs.groupby(c.CUSTOMER_ID)["p_within_horizon"].max()
    cust = scores.customers.set_index(c.CUSTOMER_ID)
    assert (cust["p_next_order_within_horizon"] >= merged.loc[cust.index] - 1e-12).all()
    assert (
        cust["next_order_expected_date"]
        == (
            pd.Timestamp("2024-05-06") + pd.to_timedelta(cust["next_order_expected_days"], "D")
        ).dt.normalize()
    ).all()

    # ISO week 2024-W19 is Mon 6 .. Sun 12 May: exactly model week 1.
    seg = in_market(settings, "2024-W19", 0.3, scores=scores)
    expected = scores.pairs[scores.pairs["p_week_1"] >= 0.3]
    consented = {f"c{i:03d}" for i in range(0, 80, 2)}
    expected = expected[expected[c.CUSTOMER_ID].isin(consented)]
    assert len(seg) == len(expected) > 0
    assert set(seg[c.CUSTOMER_ID]) <= consented
    lookup = expected.set_index([c.CUSTOMER_ID, c.ITEM_ID])["p_week_1"]
    np.testing.assert_allclose(
        seg["p_in_market_week"].to_numpy(),
        lookup.loc[list(zip(seg[c.CUSTOMER_ID], seg[c.ITEM_ID], strict=True))].to_numpy(),
    )
    assert seg["p_in_market_week"].is_monotonic_decreasing
