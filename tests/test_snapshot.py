"""Snapshot features against numbers worked out by hand on a tiny shop (T = 2024-07-01)."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from feature_fixtures import T, hand_worked_events, write_shop

from features import contract as c
from features import feature_groups as fg
from features.definitions import lifecycle_stage
from features.manifest import KEY_GROUP, feature_names, read_manifest
from features.shop import open_shop
from features.snapshot import (
    build_snapshot,
    compute_features,
    normalize_as_of,
    read_snapshot,
    write_snapshot,
)

NOW = datetime(2025, 1, 1)


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory):
    return write_shop(tmp_path_factory.mktemp("shop"), hand_worked_events())


@pytest.fixture(scope="module")
def snap(shop_dir):
    return build_snapshot(open_shop(shop_dir, now=NOW), T)


def row(df: pd.DataFrame, customer: str) -> pd.Series:
    return df.set_index(c.CUSTOMER_ID).loc[customer]


def test_population_is_customers_created_before_t(snap):
    assert list(snap.customer[c.CUSTOMER_ID]) == ["a", "b", "c", "d", "e", "f"]


def test_rfm_of_customer_a(snap):
    a = row(snap.customer, "a")
    assert a["recency_days"] == pytest.approx(30.5)  # last order 2024-05-31 12:00
    assert a["orders_total"] == 3  # the order at T itself is not counted
    assert a["monetary_total"] == pytest.approx(72.0)  # 10 + 40 + 10 + 12
    assert [a[f"orders_{w}d"] for w in fg.WINDOWS_DAYS] == [0, 0, 1, 3]
    assert [a[f"monetary_{w}d"] for w in fg.WINDOWS_DAYS] == [0.0, 0.0, 12.0, 72.0]
    assert a["first_order_days"] == pytest.approx(181 + 13 / 24 + 54 / 1440)


def test_intervals_of_customer_a(snap):
    a = row(snap.customer, "a")
    gaps = np.array([59 + 22 / 24 + 54 / 1440, 91.125])  # 01-01 10:06 -> 03-01 09:00 -> 05-31 12:00
    assert a["interval_mean_days"] == pytest.approx(gaps.mean())
    assert a["interval_std_days"] == pytest.approx(gaps.std(ddof=1))
    assert a["recency_over_interval"] == pytest.approx(30.5 / gaps.mean())
    d = row(snap.customer, "d")
    assert d["interval_mean_days"] == pytest.approx(92.0)
    assert math.isnan(d["interval_std_days"])  # two orders: one gap, no std
    assert math.isnan(row(snap.customer, "c")["interval_mean_days"])


def test_sessions_carts_emails_returns_of_customer_a(snap):
    a = row(snap.customer, "a")
    assert [a[f"sessions_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 2, 4]
    assert [a[f"abandoned_carts_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 1, 1]
    assert [a[f"product_views_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 2, 3]
    assert [a[f"add_to_carts_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 1, 2]
    # opens 2024-06-28 and 2024-04-01 (91 days before T); 07-03 is after T
    assert [a[f"email_opens_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 1, 2]
    assert [a[f"email_clicks_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 1, 1]
    assert [a[f"returns_{w}d"] for w in fg.WINDOWS_DAYS] == [0, 1, 1, 1]
    assert [a[f"return_value_{w}d"] for w in fg.WINDOWS_DAYS] == [0.0, 40.0, 40.0, 40.0]
    assert a["events_total"] == 13
    assert a["days_since_last_email_open"] == pytest.approx(2 + 17 / 24)  # 06-28 07:00
    assert a["days_since_last_email_click"] == pytest.approx(2 + 17 / 24 - 1 / 1440)
    assert a["days_since_last_return"] == pytest.approx(20 + 16 / 24)
    assert math.isnan(a["days_since_last_signup"])


def test_fading_session_counts_of_customer_a(snap):
    a = row(snap.customer, "a")
    # session starts 01-01 10:00, 03-01 09:00, 05-31 12:00, 06-25 20:00 (days before T)
    ages = np.array([182 - 10 / 24, 122 - 9 / 24, 30.5, 5 + 4 / 24])
    for d in fg.DECAY_DAYS:
        assert a[f"sessions_decay_{d}d"] == pytest.approx(np.exp(-ages / d).sum())
    assert a["days_since_last_session"] == pytest.approx(5 + 4 / 24)
    # summed in integer units of 1e-9 session, so no thread order can change a bit
    units = snap.customer[[f"sessions_decay_{d}d" for d in fg.DECAY_DAYS]].to_numpy() * 1e9
    np.testing.assert_allclose(units, np.round(units), rtol=0, atol=1e-4)
    e = row(snap.customer, "e")  # no session at all
    assert e["sessions_decay_30d"] == 0.0 and math.isnan(e["days_since_last_session"])


def test_email_sends_and_open_rate(tmp_path):
    sends = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "a", "a", "b"],
            # 2 days, 92 days before T, and at T itself (not before T: left out)
            c.TS: pd.to_datetime(["2024-06-29", "2024-03-31", "2024-07-01", "2024-06-30"]),
            c.CAMPAIGN_ID: ["k1", "k2", "k3", "k1"],
        }
    )
    shop_dir = write_shop(tmp_path / "shop", hand_worked_events())
    sends.to_parquet(shop_dir / "sends.parquet", index=False)
    cust = build_snapshot(open_shop(shop_dir, now=NOW), T, tables=(fg.CUSTOMER,)).customer
    a = row(cust, "a")
    assert [a[f"email_sends_{w}d"] for w in fg.WINDOWS_DAYS] == [1, 1, 1, 2]
    # opens per window [1, 1, 1, 2] (test above)
    assert [a[f"email_open_rate_{w}d"] for w in fg.WINDOWS_DAYS] == [1.0, 1.0, 1.0, 1.0]
    b = row(cust, "b")
    assert b["email_sends_7d"] == 1 and b["email_open_rate_7d"] == 0.0
    c_ = row(cust, "c")  # never sent anything: 0 sends, undefined rate
    assert c_["email_sends_365d"] == 0 and math.isnan(c_["email_open_rate_365d"])


def test_no_sends_table_means_zero_sends_and_undefined_rates(snap):
    assert (snap.customer["email_sends_365d"] == 0).all()
    assert snap.customer["email_open_rate_365d"].isna().all()


def test_affinities_and_channel_mix(snap):
    a = row(snap.customer, "a")
    # views: coffee, coffee, doll; purchase lines: coffee, pan, coffee, coffee
    assert a["view_share_kitchen_food"] == pytest.approx(2 / 3)
    assert a["view_share_toys"] == pytest.approx(1 / 3)
    assert a["view_share_cookware"] == 0.0
    assert a["purchase_share_kitchen_food"] == pytest.approx(0.75)
    assert a["purchase_share_cookware"] == pytest.approx(0.25)
    # 12 of 13 events have a channel: web 6, app 3, email 3
    assert a["channel_share_web"] == pytest.approx(0.5)
    assert a["channel_share_app"] == pytest.approx(0.25)
    assert a["channel_share_email"] == pytest.approx(0.25)
    b = row(snap.customer, "b")
    assert b["view_share_toys"] == pytest.approx(0.5)
    assert math.isnan(b["purchase_share_toys"])  # never bought


def test_profile_and_lifecycle(snap):
    cu = snap.customer.set_index(c.CUSTOMER_ID)
    assert cu.loc["a", "tenure_days"] == 547.0
    assert list(cu["age_years"].fillna(-1)) == [34.0, 23.0, -1.0, 44.0, 48.0, -1.0]
    assert list(cu["lifecycle_stage"].astype(str)) == [
        fg.RETENTION,
        fg.ACQUISITION,
        fg.ACTIVATION,
        fg.WIN_BACK,
        fg.RETENTION,
        fg.DEVELOPMENT,
    ]
    assert cu.loc["f", "lifecycle_development"] == 1
    assert cu[[f"lifecycle_{s}" for s in fg.LIFECYCLE_STAGES]].sum(axis=1).tolist() == [1] * 6
    assert math.isnan(cu.loc["b", "recency_days"])


def test_lifecycle_rule_overdue_is_win_back():
    # 3 orders 20 days apart, last one 100 days ago: > max(2 x 20, 90) -> win_back
    codes = lifecycle_stage(
        np.array([3, 3]), np.array([100.0, 60.0]), np.array([140.0, 400.0]), np.array([20.0, 40.0])
    )
    assert [fg.LIFECYCLE_STAGES[i] for i in codes] == [fg.WIN_BACK, fg.RETENTION]


def test_customer_item_and_category_cycles(snap):
    ci = snap.customer_item
    assert list(zip(ci[c.CUSTOMER_ID], ci[c.ITEM_ID], strict=True)) == [
        ("a", "coffee"),
        ("c", "tea"),
        ("d", "tea"),
        ("e", "coffee"),
        ("f", "coffee"),
    ]  # the pan is durable, so no row for it
    own_a = (181 + 13 / 24 + 54 / 1440 - 30.5) / 2
    coffee_cycles = sorted([own_a, 546.0 / 3, 45.0])
    a = ci.iloc[0]
    assert a["purchases"] == 3
    assert a["days_since_last"] == pytest.approx(30.5)
    assert a["own_cycle_days"] == pytest.approx(own_a)
    assert a["median_cycle_days"] == pytest.approx(coffee_cycles[1])
    assert a["overdue_own"] == pytest.approx(30.5 / own_a)
    assert a["overdue_median"] == pytest.approx(30.5 / coffee_cycles[1])
    c_tea = ci.iloc[1]
    assert c_tea["purchases"] == 1  # two lines, one order
    assert math.isnan(c_tea["own_cycle_days"])
    assert c_tea["median_cycle_days"] == pytest.approx(92.0)  # only d bought tea twice

    cc = snap.customer_category
    assert list(cc[c.CATEGORY].unique()) == ["Kitchen & Food"]
    assert cc.set_index(c.CUSTOMER_ID).loc["a", "purchases"] == 3


def test_manifest_covers_every_column_in_order(snap):
    for entity in fg.ENTITIES:
        names = [s.name for s in snap.manifest if s.entity == entity]
        assert names == list(snap.table(entity).columns)
    by_name = {s.name: s for s in snap.manifest if s.entity == fg.CUSTOMER}
    assert by_name["monetary_30d"].unit == "EUR"
    assert by_name["recency_days"].unit == "days"
    assert by_name["lifecycle_stage"].dtype == "category"
    assert by_name[c.CUSTOMER_ID].group == KEY_GROUP
    assert "view_share_kitchen_food" in feature_names(snap.manifest)
    assert "'Kitchen & Food'" in by_name["view_share_kitchen_food"].description
    dtypes = {s.name: s.dtype for s in snap.manifest if s.entity == fg.CUSTOMER}
    assert {n: str(t) for n, t in snap.customer.dtypes.items() if dtypes[n] != "string"} == {
        n: t for n, t in dtypes.items() if t != "string"
    }


def test_compute_features_writes_parquet_and_manifest(shop_dir, tmp_path):
    snap = compute_features(shop_dir, "2024-07-01", tmp_path)
    folder = tmp_path / "as_of=2024-07-01"
    assert sorted(p.name for p in folder.iterdir()) == [
        "customer.parquet",
        "customer_category.parquet",
        "customer_item.parquet",
        "manifest.json",
    ]
    as_of, manifest = read_manifest(folder / "manifest.json")
    assert as_of == T and manifest == snap.manifest
    assert json.loads((folder / "manifest.json").read_text())["rows"]["customer"] == 6
    back = read_snapshot(folder)
    pd.testing.assert_frame_equal(back.customer, snap.customer)
    pd.testing.assert_frame_equal(back.customer_item, snap.customer_item)
    # rewriting gives identical bytes and leaves no temporary folders behind
    first = (folder / "customer.parquet").read_bytes()
    write_snapshot(snap, tmp_path)
    assert (folder / "customer.parquet").read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["as_of=2024-07-01"]


def test_normalize_as_of():
    assert normalize_as_of("2024-07-01") == datetime(2024, 7, 1)
    assert normalize_as_of(datetime(2024, 7, 1).date()) == datetime(2024, 7, 1)
    with pytest.raises(ValueError, match="as_of"):
        normalize_as_of("first of July")


def test_packed_counts_equal_plain_counts(shop_dir):
    # the event pass packs up to 3 counts into one integer sum; the fallback used when a
    # customer has >= 2**21 events before T (per_sum=1) must give identical columns
    from features import snapshot as s

    shop = open_shop(shop_dir, now=NOW)
    exp = s._expansions(shop, T)
    packed = s._finish_customer(s._run(shop, fg.CUSTOMER, T, exp))
    plain = s._finish_customer(s._run(shop, "customer_unpacked", T, exp))
    pd.testing.assert_frame_equal(packed, plain)
    assert row(packed, "a")["product_views_90d"] == 2
    assert s.customer_features(shop, T).equals(build_snapshot(shop, T).customer)
