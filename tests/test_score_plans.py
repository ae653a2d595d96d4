"""Score plans: points per action/attribute with decay, point-in-time, config errors."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from features import contract as c
from features.shop import open_shop
from klantbeeld.errors import ConfigError
from serving.score_plans import compute_score_plans, load_score_plans, parse_score_plans

T = datetime(2026, 3, 1)
PLAN = {
    "score_plans": {
        "p": {
            "half_life_days": 7,
            "rules": [
                {"event": "product_view", "points": 5, "window_days": 7},
                {"event": "abandoned_cart", "points": 20, "window_days": 30},
                {"event": "email_click", "points": 3, "window_days": 30, "max_points": 4},
                {"attribute": "consent_email", "equals": True, "points": 10},
                {"fake_contact": True, "points": -50},
            ],
        }
    }
}


def _shop(tmp_path, extra_events=()):
    d = tmp_path / "shop"
    d.mkdir(exist_ok=True)
    pd.DataFrame(
        {
            c.CUSTOMER_ID: ["A", "B", "C"],
            c.CREATED_AT: "2026-01-01 00:00:00",
            c.CONSENT_EMAIL: [True, False, False],
            c.EMAIL: ["a@shop.nl", "test@test.com", "c@shop.nl"],
        }
    ).to_csv(d / "customers.csv", index=False)
    pd.DataFrame({c.ITEM_ID: ["I1"], c.TITLE: ["Item"], c.CATEGORY: ["toys"]}).to_csv(
        d / "items.csv", index=False
    )
    rows = [
        ("A", "2026-02-28 00:00:00", "product_view"),  # 1 day old: 5 * 0.5**(1/7)
        ("A", "2026-02-22 00:00:00", "product_view"),  # 7 days old: 5 * 0.5
        ("A", "2026-02-01 00:00:00", "product_view"),  # outside the 7-day window
        ("A", "2026-02-15 00:00:00", "add_to_cart"),  # bought after: not abandoned
        ("A", "2026-02-16 00:00:00", "purchase"),
        ("C", "2026-02-22 00:00:00", "add_to_cart"),  # abandoned, 7 days old: 20 * 0.5
        ("C", "2026-02-28 00:00:00", "email_click"),
        ("C", "2026-02-28 00:00:00", "email_click"),  # 2 * 3 * 0.5**(1/7), capped at 4
        *extra_events,
    ]
    pd.DataFrame(rows, columns=[c.CUSTOMER_ID, c.TS, c.EVENT_TYPE]).assign(
        **{c.ITEM_ID: "I1"}
    ).to_csv(d / "events.csv", index=False)
    return open_shop(d)


def test_points_worked_out_by_hand(tmp_path):
    plans = parse_score_plans(PLAN, "t.yaml")
    got = compute_score_plans(_shop(tmp_path), T, plans).set_index(c.CUSTOMER_ID)["p_points"]
    assert got["A"] == pytest.approx(5 * 0.5 ** (1 / 7) + 5 * 0.5 + 10)
    assert got["B"] == pytest.approx(-50.0)  # test@test.com is fake, no consent
    assert got["C"] == pytest.approx(20 * 0.5 + 4.0)


def test_events_at_or_after_t_never_change_the_points(tmp_path):
    plans = parse_score_plans(PLAN, "t.yaml")
    before = compute_score_plans(_shop(tmp_path), T, plans)
    later = [
        ("A", "2026-03-01 00:00:00", "product_view"),
        ("C", "2026-03-02 00:00:00", "purchase"),  # would un-abandon C's cart
    ]
    after = compute_score_plans(_shop(tmp_path, later), T, plans)
    pd.testing.assert_frame_equal(before, after)


def test_config_errors_name_the_plan_and_field(tmp_path):
    assert "engagement" in load_score_plans()
    bad = {
        "score_plans": {
            "x": {"rules": [{"event": "product_view", "points": 5}]},
            "y": {"rules": [{"points": 1, "attribute": "city"}]},
            "z": {"rules": [{"points": 1}]},
        }
    }
    with pytest.raises(ConfigError) as info:
        parse_score_plans(bad, "p.yaml")
    msg = str(info.value)
    assert "score plan 'x', field 'rules.0'" in msg and "needs 'window_days'" in msg
    assert "score plan 'y'" in msg and "needs 'equals'" in msg
    assert "score plan 'z'" in msg and "exactly one of 'event'" in msg
    plans = parse_score_plans(
        {"score_plans": {"q": {"rules": [{"attribute": "shoe", "equals": 1, "points": 1}]}}}, "q"
    )
    with pytest.raises(ConfigError, match="score plan 'q', rule 1: attribute 'shoe'"):
        compute_score_plans(_shop(tmp_path), T, plans)
