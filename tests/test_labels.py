"""Labels and populations against outcomes worked out by hand (T = 2024-07-01 00:00)."""

from __future__ import annotations

import math
from datetime import datetime

import pandas as pd
import pytest
from feature_fixtures import ITEMS, T, ev, write_shop

from features import contract as c
from features.labels import (
    DAYS_TO_NEXT,
    LABEL,
    OBSERVED,
    WEEK,
    churn_labels,
    conversion_labels,
    repurchase_labels,
)
from features.shop import open_shop

CUSTOMERS = pd.DataFrame(
    {
        c.CUSTOMER_ID: ["p", "q", "r", "s", "t", "m", "u"],
        c.CREATED_AT: pd.to_datetime(["2023-01-01"] * 6 + ["2024-07-02"]),
    }
)


def label_events() -> pd.DataFrame:
    rows = [
        # p: visits in June, buys coffee in March and 2.5 days after T
        ev("p", "2024-03-01 10:00", c.PURCHASE, "coffee", 10.0, order="p1", session="ps1"),
        ev("p", "2024-03-01 10:00", c.PURCHASE, "tea", 5.0, order="p1", session="ps1"),
        ev("p", "2024-06-20 10:00", c.PAGE_VIEW, session="ps2"),
        ev("p", "2024-07-03 12:00", c.PURCHASE, "coffee", 10.0, order="p2", session="ps3"),
        # q: visits in June, bought tea in January; buys tea 8 days after T and next at
        # exactly T + 7 d (conversion window end) -> not a conversion
        ev("q", "2024-01-10 10:00", c.PURCHASE, "tea", 5.0, order="q1", session="qs1"),
        ev("q", "2024-06-25 10:00", c.PRODUCT_VIEW, "tea", session="qs2"),
        ev("q", "2024-07-08 00:00", c.PRODUCT_VIEW, "tea", session="qs3"),
        ev("q", "2024-07-09 00:00", c.PURCHASE, "tea", 5.0, order="q2", session="qs3"),
        ev("q", "2024-09-29 00:00", c.PURCHASE, "tea", 5.0, order="q3", session="qs4"),
        # r: last visit 47 days before T -> outside the conversion population
        ev("r", "2024-05-15 10:00", c.PAGE_VIEW, session="rs1"),
        ev("r", "2024-07-02 10:00", c.PURCHASE, "pan", 40.0, order="r1", session="rs2"),
        # s: buys one minute before T (does not count as a conversion) and again at T+14d
        ev("s", "2024-06-30 23:59", c.PURCHASE, "coffee", 10.0, order="s1", session="ss1"),
        ev("s", "2024-07-15 00:00", c.PURCHASE, "coffee", 10.0, order="s2", session="ss2"),
        # t: visit in June, purchase exactly at T -> conversion (the window includes T)
        ev("t", "2024-06-10 10:00", c.PAGE_VIEW, session="ts1"),
        ev("t", "2024-07-01 00:00", c.PURCHASE, "doll", 20.0, order="t1", session="ts2"),
        # m: email only -> no session, not in the conversion population; bought a pan
        # 400 days before T -> not in the churn population either
        ev("m", "2024-06-28 07:00", c.EMAIL_OPEN, channel="email"),
        ev("m", "2023-05-28 07:00", c.PURCHASE, "pan", 40.0, order="m1"),
        # u: created after T
        ev("u", "2024-07-03 07:00", c.PURCHASE, "tea", 5.0, order="u1", session="us1"),
        # an event at the very end of the data, so no horizon is censored
        ev("m", "2024-12-31 00:00", c.PAGE_VIEW, session="ms9"),
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    path = write_shop(tmp_path_factory.mktemp("labels"), label_events(), CUSTOMERS, ITEMS)
    return open_shop(path, now=datetime(2025, 1, 1))


def as_dict(df: pd.DataFrame) -> dict[str, int]:
    return dict(zip(df[c.CUSTOMER_ID], df[LABEL].astype(int), strict=True))


def test_conversion_population_and_labels(shop):
    out = conversion_labels(shop, T, horizon_days=7, population_days=30)
    assert str(out[LABEL].dtype) == "int8"
    # p buys at T+2.5d; q's only purchase in [T, T+7d) would be at T+8d; s bought before
    # T only; t buys exactly at T
    assert as_dict(out) == {"p": 1, "q": 0, "s": 0, "t": 1}


def test_conversion_horizon_is_a_setting(shop):
    out = conversion_labels(shop, T, horizon_days=9, population_days=60)
    # a longer population window brings r in (visit 47 days before T; buys at T+1.4d)
    assert as_dict(out) == {"p": 1, "q": 1, "r": 1, "s": 0, "t": 1}


def test_churn_population_and_labels(shop):
    out = churn_labels(shop, T, horizon_days=90, population_days=365)
    # q's next purchase after the one at T+8d is at exactly T+90d; s buys at T+14d;
    # m's last purchase is 400 days old -> not in the population
    assert as_dict(out) == {"p": 0, "q": 0, "s": 0}
    short = churn_labels(shop, T, horizon_days=7, population_days=365)
    assert as_dict(short) == {"p": 0, "q": 1, "s": 1}


def test_repurchase_labels_item_level(shop):
    out = repurchase_labels(shop, T, weeks=2, level="item")
    assert list(zip(out[c.CUSTOMER_ID], out[c.ITEM_ID], strict=True)) == [
        ("p", "coffee"),
        ("p", "tea"),
        ("q", "tea"),
        ("s", "coffee"),
    ]  # durables (pan, doll) and customer u (created after T) have no pairs
    got = out.set_index([c.CUSTOMER_ID, c.ITEM_ID])
    assert got.loc[("p", "coffee"), DAYS_TO_NEXT] == 2.5
    assert got.loc[("p", "coffee"), WEEK] == 1
    assert got.loc[("q", "tea"), DAYS_TO_NEXT] == 8.0
    assert got.loc[("q", "tea"), WEEK] == 2
    # s rebuys at exactly T + 14 d = the end of a 2-week window -> not observed
    assert math.isnan(got.loc[("s", "coffee"), DAYS_TO_NEXT])
    assert got.loc[("s", "coffee"), WEEK] == 0
    assert list(out[OBSERVED]) == [1, 0, 1, 0]
    assert str(out[OBSERVED].dtype) == "int8"


def test_repurchase_labels_category_level(shop):
    out = repurchase_labels(shop, T, weeks=12, level="category")
    got = out.set_index([c.CUSTOMER_ID, c.CATEGORY])
    assert list(got.index) == [
        ("p", "Kitchen & Food"),
        ("q", "Kitchen & Food"),
        ("s", "Kitchen & Food"),
    ]
    assert list(got[DAYS_TO_NEXT]) == [2.5, 8.0, 14.0]
    assert list(got[WEEK]) == [1, 2, 3]


def test_arguments_are_checked(shop):
    with pytest.raises(ValueError, match="level"):
        repurchase_labels(shop, T, level="brand")
    with pytest.raises(ValueError, match="horizon_days"):
        conversion_labels(shop, T, horizon_days=0)
