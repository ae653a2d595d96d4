"""Online state store: round trip, time filter, atomic batches, prune."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from serving.state import SQLiteStateStore


def test_sends_round_trip_and_time_filter(tmp_path):
    store = SQLiteStateStore(tmp_path / "sub" / "state.sqlite")
    n = store.record_sends(
        pd.DataFrame(
            {
                "customer_id": ["a", "a", "b"],
                "item_id": ["i1", "i2", "i1"],
                "placement": ["newsletter", None, "web_for_you"],
                "ts": ["2026-01-01 10:00", "2026-01-05", "2026-01-06T00:00:00"],
            }
        )
    )
    assert n == 3
    got = store.recent_sends(datetime(2026, 1, 1, 10, 0))
    assert got[["customer_id", "item_id", "placement"]].values.tolist() == [
        ["a", "i2", None],
        ["b", "i1", "web_for_you"],
    ]
    assert got["ts"].tolist() == [pd.Timestamp("2026-01-05"), pd.Timestamp("2026-01-06")]
    only_b = store.recent_sends(datetime(2025, 1, 1), customer_ids=["b", "zz"])
    assert only_b["item_id"].tolist() == ["i1"]


def test_timezone_aware_input_is_stored_as_utc(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    ts = pd.Series(pd.to_datetime(["2026-01-01 12:00"]).tz_localize("Europe/Amsterdam"))
    store.record_purchases(pd.DataFrame({"customer_id": ["a"], "item_id": ["i"], "ts": ts}))
    got = store.recent_purchases(datetime(2025, 1, 1))
    assert got["ts"].tolist() == [pd.Timestamp("2026-01-01 11:00")]


def test_failed_batch_stores_nothing(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    store.record_purchases(
        pd.DataFrame({"customer_id": ["a"], "item_id": ["i"], "ts": ["2026-01-01"]})
    )
    bad = pd.DataFrame(
        {"customer_id": ["b", "c"], "item_id": ["i", "j"], "ts": ["2026-01-02", "x"]}
    )
    with pytest.raises(ValueError, match="ts has 1 missing/unparseable"):
        store.record_purchases(bad)
    missing = pd.DataFrame(
        {"customer_id": ["b", None], "item_id": ["i", "j"], "ts": ["2026-01-02"] * 2}
    )
    with pytest.raises(ValueError, match="'customer_id' has 1 missing"):
        store.record_purchases(missing)
    assert store.recent_purchases(datetime(2000, 1, 1))["customer_id"].tolist() == ["a"]


def test_insert_failing_inside_the_transaction_rolls_back(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    rows = [("a", "i1", None, "2026-01-01T00:00:00.000000"), ("b", "i2", None, None)]
    with pytest.raises(Exception, match="NOT NULL"):
        store._insert("sends", ("customer_id", "item_id", "placement", "ts"), rows)
    assert len(store.recent_sends(datetime(2000, 1, 1))) == 0


def test_prune_and_many_ids(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    ids = [f"c{i}" for i in range(1200)]
    store.record_sends(
        pd.DataFrame(
            {"customer_id": ids, "item_id": "i", "ts": ["2026-01-01"] * 600 + ["2026-02-01"] * 600}
        )
    )
    assert len(store.recent_sends(datetime(2000, 1, 1), customer_ids=ids)) == 1200
    assert store.prune(datetime(2026, 1, 15)) == 600
    assert len(store.recent_sends(datetime(2000, 1, 1))) == 600
