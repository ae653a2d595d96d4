"""k-means automatic segments: planted groups are found, described and written; seeded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from klantbeeld.errors import ConfigError
from serving.autosegments.kmeans import auto_segments, behaviour_columns, feature_family
from serving.autosegments.report import write_auto_segments


def _planted(n_per: int = 300, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Three behaviours: frequent buyers, browsers who never buy, lapsed customers."""
    rng = np.random.default_rng(seed)
    rows, truth = [], []
    for group, (orders, views, recency) in enumerate([(12, 20, 5), (0, 40, 3), (1, 1, 300)]):
        for _ in range(n_per):
            rows.append(
                {
                    "orders_365d": rng.poisson(orders),
                    "monetary_365d": rng.gamma(2.0, 10.0) * max(orders, 0.1),
                    "product_views_90d": rng.poisson(views),
                    "recency_days": recency * rng.uniform(0.7, 1.3) if orders else np.nan,
                    "age_years": rng.uniform(20, 70),  # not behaviour: never used
                }
            )
            truth.append(group)
    frame = pd.DataFrame(rows)
    frame.insert(0, "customer_id", [f"C{i:05d}" for i in range(len(frame))])
    return frame, np.array(truth)


def test_planted_groups_are_recovered_and_described():
    frame, truth = _planted()
    result = auto_segments(frame, k=3, seed=1)
    assert "age_years" not in result.columns
    assert adjusted_rand_score(truth, result.assignment["cluster"]) > 0.9
    # the browsers' cluster is described by low orders and high views
    browsers = pd.Series(result.assignment["cluster"].to_numpy()[truth == 1]).mode()[0]
    desc = result.description[result.description.cluster == browsers]
    top = dict(zip(desc.feature, desc.direction, strict=True))
    assert top.get("orders_365d") == "low" or top.get("monetary_365d") == "low"
    assert top.get("product_views_90d") == "high"
    sizes = result.description.drop_duplicates("cluster")["size"].to_numpy()
    assert list(sizes) == sorted(sizes, reverse=True)  # numbered by size


def test_seeded_and_k_by_silhouette():
    frame, _ = _planted(n_per=150)
    a = auto_segments(frame, seed=3, k_range=range(2, 6), sample=400)
    b = auto_segments(frame, seed=3, k_range=range(2, 6), sample=400)
    assert a.k == 3 and set(a.silhouette) == {2, 3, 4, 5}
    pd.testing.assert_frame_equal(a.assignment, b.assignment)


def test_family_and_columns():
    assert feature_family("sessions_decay_90d") == feature_family("sessions_7d") == "sessions"
    frame = pd.DataFrame({"customer_id": ["a", "b"], "orders_7d": [1, 1], "city": ["x", "y"]})
    assert behaviour_columns(frame) == []  # constant and non-numeric columns left out
    with pytest.raises(ConfigError, match="no behavioural"):
        auto_segments(frame, k=2)


def test_written_files(tmp_path):
    frame, _ = _planted(n_per=60)
    result = auto_segments(frame, k=3, seed=0)
    summary = write_auto_segments(result, tmp_path, "synthetic")
    on_disk = json.loads((tmp_path / "auto_segments.json").read_text())
    assert on_disk == summary
    assert sum(cl["size"] for cl in on_disk["clusters"]) == len(frame)
    back = pd.read_parquet(tmp_path / "auto_segments.parquet")
    pd.testing.assert_frame_equal(back, result.assignment)
    assert len(pd.read_csv(tmp_path / "auto_segments_description.csv")) == len(result.description)


def test_cli_segments_auto(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from klantbeeld.cli import app

    frame, _ = _planted(n_per=80)
    snap = tmp_path / "home" / "features" / "as_of=2026-03-01" / "customer.parquet"
    snap.parent.mkdir(parents=True)
    frame.to_parquet(snap, index=False)
    monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path / "home"))
    from klantbeeld.settings import get_settings

    get_settings.cache_clear()
    try:
        res = CliRunner().invoke(
            app, ["segments", "auto", "--k", "3", "--out", str(tmp_path / "o")]
        )
        monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path / "empty"))
        get_settings.cache_clear()
        empty = CliRunner().invoke(app, ["segments", "auto", "--out", str(tmp_path / "p")])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "o" / "auto_segments.json").read_text())
    assert summary["k"] == 3 and summary["source"] == str(snap)
    assert empty.exit_code == 2 and "no customer feature snapshot" in empty.output
