"""One definition per feature: hand-worked values, and every consumer gives the same numbers.

The snapshot (features), the recommender's buy-again cycles (models) and the rule context
(serving, from pandas rows and from the shop via Ibis) must agree on ``own_cycle_days`` and
the item's median cycle for the same history; the Ibis and numpy forms of the lifecycle
rule must agree; every "end of the data" is the midnight after the latest event.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from types import SimpleNamespace

import ibis
import numpy as np
import pandas as pd
import pytest
from feature_fixtures import CUSTOMERS, ITEMS, T, hand_worked_events, write_shop

from features import contract as c
from features import feature_groups as fg
from features.definitions import (
    data_end,
    end_of_day,
    last_event_time,
    lifecycle_code_expr,
    lifecycle_stage,
    mean_interval_days,
    mean_interval_expr,
    median_cycle_days,
    own_cycle_days,
    pair_cycle_days,
    purchase_cycles,
)
from features.shop import open_shop
from features.snapshot import build_snapshot
from klantbeeld.errors import ConfigError
from models.recommender.interactions import IdMap, item_cycle_days
from serving.context import RecContext, build_context
from training.window import data_range

NOW = datetime(2025, 1, 1)


# -- hand-worked values ------------------------------------------------------------------
def test_own_cycle_is_the_mean_days_between_orders() -> None:
    # Orders 100, 70 and 10 days before T: (100 - 10) / 2 = 45 days.
    got = own_cycle_days([100.0, 90.0, 50.0], [10.0, 90.0, np.nan], [3, 1, 2])
    np.testing.assert_array_equal(got[:1], [45.0])
    assert np.isnan(got[1]) and np.isnan(got[2])  # one order; missing last
    # 4 orders 90, 80, 70 and 0 days before T: the mean gap 30, not the median gap 10.
    assert own_cycle_days([90.0], [0.0], [4])[0] == pytest.approx(30.0)
    np.testing.assert_array_equal(mean_interval_days([20.0], [5.0], [4]), [5.0])


def test_median_cycle_is_over_customers_and_pair_cycle_falls_back() -> None:
    own = [30.0, 10.0, np.nan, 7.0]
    key = ["flour", "flour", "flour", "tea"]
    np.testing.assert_array_equal(median_cycle_days(own, key), [20.0, 20.0, 20.0, 7.0])
    np.testing.assert_array_equal(
        pair_cycle_days([np.nan, 0.0, 12.0, np.nan], [20.0, 20.0, 20.0, np.nan]),
        [20.0, 20.0, 12.0, np.nan],
    )


def test_purchase_cycles_count_distinct_orders() -> None:
    lines = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "a", "a", "a", "b"],
            c.ITEM_ID: ["x"] * 5,
            # a: one order of two lines on day 0 (same order_id), one on day 9, one without
            # an order_id on day 30 -> 3 orders, (30 - 0) / 2 = 15 days.
            c.TS: pd.to_datetime(
                [
                    "2024-01-01 00:00",
                    "2024-01-01 00:05",
                    "2024-01-10 00:00",
                    "2024-01-31 00:00",
                    "2024-01-05 00:00",
                ]
            ),
            c.ORDER_ID: ["o1", "o1", "o2", None, "o9"],
        }
    )
    out = purchase_cycles(lines, c.ITEM_ID, datetime(2024, 2, 1)).set_index(c.CUSTOMER_ID)
    assert out.loc["a", "purchases"] == 3 and out.loc["a", "lines"] == 4
    assert out.loc["a", "own_cycle_days"] == pytest.approx(15.0)
    assert np.isnan(out.loc["b", "own_cycle_days"])
    assert out.loc["b", "median_cycle_days"] == pytest.approx(15.0)


def test_lifecycle_ibis_form_equals_numpy_form() -> None:
    rng = np.random.default_rng(0)
    n = 400
    orders = rng.integers(0, 5, n)
    recency = np.where(orders > 0, rng.uniform(0, 400, n), np.nan)
    first = np.where(orders > 0, recency + rng.uniform(0, 400, n) * (orders > 1), np.nan)
    mean = mean_interval_days(first, recency, orders)
    # the rule's edges: exactly LAPSED_DAYS, exactly 2 x mean, exactly DEVELOPMENT_DAYS
    orders[:3], recency[:3], first[:3] = 3, [fg.LAPSED_DAYS, 100.0, 50.0], [300.0, 200.0, 180.0]
    mean[:3] = mean_interval_days(first[:3], recency[:3], orders[:3])
    frame = pd.DataFrame({"n": orders, "rec": recency, "first": first})
    t = ibis.memtable(frame)
    m = mean_interval_expr(t["first"], t["rec"], t["n"])
    expr = t.select(
        mean=m, code=lifecycle_code_expr(t["n"], t["rec"], t["first"], m), i=ibis.row_number()
    )
    got = ibis.duckdb.connect().execute(expr.order_by("i"))
    np.testing.assert_allclose(got["mean"].to_numpy(dtype=float), mean, equal_nan=True)
    np.testing.assert_array_equal(
        got["code"].to_numpy(), lifecycle_stage(orders, recency, first, mean)
    )
    assert len(set(got["code"])) == len(fg.LIFECYCLE_STAGES)  # every stage reached


def test_end_of_the_data_is_the_midnight_after_the_last_event(tmp_path) -> None:
    shop = open_shop(write_shop(tmp_path / "s", hand_worked_events()), now=NOW)
    last = hand_worked_events()[c.TS].max()
    assert last_event_time(shop) == pd.Timestamp(last).to_pydatetime()
    assert data_end(shop) == pd.Timestamp(last).normalize().to_pydatetime() + timedelta(days=1)
    assert end_of_day(datetime(2024, 3, 1)) == datetime(2024, 3, 2)
    assert end_of_day(datetime(2024, 3, 1, 23, 59)) == datetime(2024, 3, 2)
    # consumers: the training window ends there, the rule context's default now is the last event
    assert data_range(shop)[1] == data_end(shop)
    assert build_context(shop).now == last_event_time(shop)
    e = shop.events
    empty = SimpleNamespace(events=e.filter(e[c.TS] < datetime(1900, 1, 1)), source="shop_x")
    assert last_event_time(empty) is None
    with pytest.raises(ConfigError, match="shop_x hold no events"):
        data_end(empty)


# -- consumers agree -----------------------------------------------------------------------
def _random_history() -> pd.DataFrame:
    """Purchases of 40 customers over 3 repurchasable items: irregular gaps, multi-line
    orders (shared order_id), and lines without an order_id."""
    rng = np.random.default_rng(7)
    rows = []
    for k in range(40):
        cust = f"r{k:02d}"
        for item in ("coffee", "tea", "pan"):
            n = int(rng.integers(0, 6))
            days = np.sort(rng.uniform(1, 300, n))
            for j, d in enumerate(days):
                ts = T - timedelta(days=float(d))
                order = None if rng.random() < 0.3 else f"{cust}-{j}"
                rows.append((cust, ts, c.PURCHASE, item, order))
                if order is not None and rng.random() < 0.3:  # a second line, same order
                    rows.append((cust, ts + timedelta(minutes=2), c.PURCHASE, item, order))
    cols = [c.CUSTOMER_ID, c.TS, c.EVENT_TYPE, c.ITEM_ID, c.ORDER_ID]
    return pd.DataFrame(rows, columns=cols)


def _customers(events: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(set(events[c.CUSTOMER_ID]))
    return pd.DataFrame({c.CUSTOMER_ID: ids, c.CREATED_AT: pd.Timestamp("2020-01-01")})


@pytest.mark.parametrize("history", ["hand_worked", "random"])
def test_snapshot_serving_and_recommender_agree_on_cycles(tmp_path, history) -> None:
    if history == "hand_worked":
        events, customers = hand_worked_events(), CUSTOMERS
    else:
        events = _random_history()
        customers = _customers(events)
    shop = open_shop(write_shop(tmp_path, events, customers, ITEMS), now=NOW)
    snap = build_snapshot(shop, T).customer_item.set_index([c.CUSTOMER_ID, c.ITEM_ID])
    assert snap["own_cycle_days"].notna().sum() >= 3
    # The snapshot reads events strictly before T; the context everything at or before now.
    before_t = T - timedelta(microseconds=1)
    contexts = {
        "pandas": RecContext.from_events(before_t, customers, ITEMS, events),
        "ibis": build_context(shop, before_t),
    }
    for name, ctx in contexts.items():
        p = ctx.purchases.set_index([c.CUSTOMER_ID, c.ITEM_ID]).reindex(snap.index)
        np.testing.assert_allclose(
            p["own_cycle_days"].to_numpy(dtype=float),
            snap["own_cycle_days"].to_numpy(dtype=float),
            rtol=1e-9,
            equal_nan=True,
            err_msg=f"own_cycle_days: {name} context vs snapshot",
        )
        np.testing.assert_array_equal(
            p["n_gaps"].to_numpy(), snap["purchases"].to_numpy() - 1, err_msg=name
        )
        cycle = ctx.items.set_index(c.ITEM_ID)["cycle_days"]
        median = snap.groupby(level=c.ITEM_ID)["median_cycle_days"].first()
        np.testing.assert_allclose(
            cycle.reindex(median.index).to_numpy(dtype=float),
            median.to_numpy(dtype=float),
            rtol=1e-9,
            equal_nan=True,
            err_msg=f"cycle_days: {name} context vs snapshot median_cycle_days",
        )
    # The recommender's buy-again cycles read the same definition.
    past = events[events[c.TS] < T]
    ids = IdMap(pd.Index(sorted(customers[c.CUSTOMER_ID])), pd.Index(sorted(ITEMS[c.ITEM_ID])))
    rec = pd.Series(item_cycle_days(past, ids), index=ids.items)
    np.testing.assert_allclose(
        rec.reindex(median.index).to_numpy(dtype=float),
        median.to_numpy(dtype=float),
        rtol=1e-9,
        equal_nan=True,
    )
