"""Batch scoring's repurchase-timing columns, from hand-made pair and customer scores."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from features import contract as c
from training.batch_score import REPURCHASE, SCORED_MODELS, repurchase_columns
from training.repurchase_scores import RepurchaseScores


def _scores(version: str = "3") -> RepurchaseScores:
    pairs = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "a", "a", "b"],
            c.ITEM_ID: ["i2", "i1", "i3", "i9"],
            "p_within_horizon": [0.4, 0.7, 0.7, 0.2],
        }
    )
    customers = pd.DataFrame(
        {
            c.CUSTOMER_ID: ["a", "b"],
            "p_next_order_within_horizon": [0.9, 0.2],
            "next_order_expected_days": [12.5, 40.0],
        }
    )
    return RepurchaseScores(datetime(2026, 11, 1), "item", pairs, customers, version)


def test_columns_follow_the_output_rows_and_fill_customers_without_history() -> None:
    cols = repurchase_columns(_scores(), np.array(["b", "z", "a"], dtype=object))
    assert list(cols) == [
        f"{REPURCHASE}_score",
        f"{REPURCHASE}_model_version",
        f"{REPURCHASE}_expected_days",
        f"{REPURCHASE}_next_item",
    ]
    assert cols[f"{REPURCHASE}_score"].to_pylist() == [0.2, 0.0, 0.9]
    assert cols[f"{REPURCHASE}_model_version"].to_pylist() == [3, 3, 3]
    days = cols[f"{REPURCHASE}_expected_days"].to_pylist()
    assert days[0] == 40.0 and np.isnan(days[1]) and days[2] == 12.5
    # the most likely pair; a tie goes to the smaller item id
    assert cols[f"{REPURCHASE}_next_item"].to_pylist() == ["i9", None, "i1"]


def test_a_local_model_has_no_registry_version() -> None:
    cols = repurchase_columns(_scores(version="local"), np.array(["a"], dtype=object))
    assert cols[f"{REPURCHASE}_model_version"].to_pylist() == [-1]


def test_repurchase_timing_is_scored_by_default() -> None:
    assert SCORED_MODELS == ("conversion_intent", "churn", REPURCHASE, "clv")
    with pytest.raises(ValueError, match="level must be"):
        repurchase_columns(dataclasses.replace(_scores(), level="brand"), np.array(["a"]))


def test_explanations_describe_each_customers_most_likely_item() -> None:
    class Explains:  # records which pair rows it was asked about
        def explain(self, X: pd.DataFrame) -> pd.DataFrame:
            self.asked = X[c.ITEM_ID].tolist()
            return pd.DataFrame(
                {"top_up": [[f"up_{i}"] for i in self.asked], "top_down": [[]] * len(X)}
            )

    scores = _scores()
    features = scores.pairs[[c.CUSTOMER_ID, c.ITEM_ID]].copy()
    model = Explains()
    cols = repurchase_columns(
        dataclasses.replace(scores, features=features), np.array(["b", "z", "a"]), model
    )
    assert sorted(model.asked) == ["i1", "i9"]
    assert cols[f"{REPURCHASE}_top_up"].to_pylist() == [["up_i9"], [], ["up_i1"]]
    assert cols[f"{REPURCHASE}_top_down"].to_pylist() == [[], [], []]
    # without the pair features (or the model) the columns are left out
    assert f"{REPURCHASE}_top_up" not in repurchase_columns(scores, np.array(["a"]), model)
