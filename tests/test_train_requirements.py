"""A purchases-only export (one placeholder item, no prices, no sessions, 1997 dates)
trains every model it supports; the others are named with what the data lack.

Also: ``--as-of`` cuts the data for training, and the horizons/populations are CLI options.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from features import contract as c
from features.shop import open_shop
from klantbeeld.cli import app
from klantbeeld.settings import Settings
from training.jobs import TrainedModels, train_model
from training.requirements import UnsupportedDataError, missing_data, profile_shop

N_CUSTOMERS = 300


def write_purchases_only(folder: Path, n: int = N_CUSTOMERS, seed: int = 0) -> int:
    """A CDNOW-like shop: purchases of one item ``cd`` in 1997-1998, no value, no sessions.

    Returns the number of events written.
    """
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    start, stop = pd.Timestamp("1997-01-01"), pd.Timestamp("1998-07-01")
    first = start + pd.to_timedelta(rng.integers(0, 84, n), unit="D")
    rows: list[tuple[str, pd.Timestamp]] = []
    for i in range(n):
        rate = rng.gamma(0.8, 1 / 30)  # purchases per day
        dies = first[i] + pd.Timedelta(days=int(rng.integers(30, 540)))
        t = first[i]
        while t < min(dies, stop):
            rows.append((f"c{i}", t))
            t = t + pd.Timedelta(days=float(rng.exponential(1 / rate)))
    events = pd.DataFrame(rows, columns=[c.CUSTOMER_ID, c.TS])
    events[c.EVENT_TYPE] = c.PURCHASE
    events[c.ITEM_ID] = "cd"
    events.to_parquet(folder / "events.parquet")
    pd.DataFrame({c.CUSTOMER_ID: [f"c{i}" for i in range(n)], c.CREATED_AT: first}).to_parquet(
        folder / "customers.parquet"
    )
    pd.DataFrame({c.ITEM_ID: ["cd"], c.TITLE: ["CD"], c.CATEGORY: ["music"]}).to_parquet(
        folder / "items.parquet"
    )
    return len(events)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    """The CLI reads the cached process settings: read them anew, and leave none behind
    for later tests in this worker."""
    from klantbeeld.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def shop_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cd") / "shop"
    write_purchases_only(folder)
    return folder


def test_profile_counts_what_the_export_holds(shop_dir: Path) -> None:
    n_events = len(pd.read_parquet(shop_dir / "events.parquet"))
    p = profile_shop(open_shop(shop_dir))
    assert (p.n_events, p.n_purchases, p.n_purchases_with_item) == (n_events,) * 3
    assert (p.n_session_events, p.n_items_with_events, p.n_valued_purchases) == (0, 1, 0)
    assert p.event_types == {"purchase": n_events}
    assert p.first_event is not None and p.first_event.year == 1997


def test_missing_data_names_the_missing_columns_and_event_types(shop_dir: Path) -> None:
    p = profile_shop(open_shop(shop_dir))
    assert missing_data("churn", p) == []
    assert missing_data("repurchase_timing", p) == []
    (conv,) = missing_data("conversion_intent", p)
    assert "session_id" in conv and "page_view" in conv and "only purchase=" in conv
    (rec,) = missing_data("recommender", p)
    assert "at least 2 distinct items" in rec and "name 1 item " in rec


def test_shop_until_keeps_only_what_came_before(shop_dir: Path) -> None:
    end = datetime(1997, 6, 1)
    shop = open_shop(shop_dir).until(end)
    ev = shop.events.to_pandas()
    raw = pd.read_parquet(shop_dir / "events.parquet")
    assert len(ev) == int((raw[c.TS] < end).sum()) > 0
    assert ev[c.TS].max() < end
    cust = pd.read_parquet(shop_dir / "customers.parquet")
    assert shop.customers.count().to_pyarrow().as_py() == int((cust[c.CREATED_AT] < end).sum())


def test_train_all_trains_what_is_supported_and_names_the_rest(
    shop_dir: Path, tmp_path: Path
) -> None:
    settings = Settings(
        home=tmp_path / "home",
        threads=1,
        churn_horizon_days=60,
        churn_population_days=180,
        repurchase_weeks=8,
        train_as_of=datetime(1998, 4, 1),
    )
    results = train_model("all", settings, shop_dir)
    assert isinstance(results, TrainedModels)
    assert list(results) == ["churn", "repurchase_timing"]
    assert list(results.skipped) == ["conversion_intent", "recommender", "clv"]
    assert "web/app sessions" in results.skipped["conversion_intent"]
    assert "order values" in results.skipped["clv"]
    assert "placeholder item" in results.skipped["recommender"]
    # --as-of: the test periods end there, not at the end of the data (1998-07-01)
    assert results["churn"].test_period == "1998-01-31/1998-04-01"
    assert results["repurchase_timing"].test_period == "1998-02-04/1998-04-01"
    assert 0.5 < results["churn"].metrics["test_roc_auc"] <= 1.0


def test_a_single_unsupported_model_raises_with_the_reason(shop_dir: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", threads=1)
    with pytest.raises(UnsupportedDataError, match="needs web/app sessions") as info:
        train_model("conversion_intent", settings, shop_dir)
    assert info.value.model == "conversion_intent"


def test_too_short_for_the_horizon_names_the_option(shop_dir: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", threads=1, churn_horizon_days=365)
    with pytest.raises(UnsupportedDataError, match="too short.*--churn-horizon"):
        train_model("churn", settings, shop_dir)


def test_cli_reports_unsupported_model_and_bad_option(
    shop_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLANTBEELD_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    r = runner.invoke(app, ["train", "recommender", "--data", str(shop_dir)])
    assert r.exit_code == 2
    assert "recommender cannot be trained" in r.output and "placeholder item" in r.output
    r = runner.invoke(app, ["train", "churn", "--data", str(shop_dir), "--churn-horizon", "400"])
    assert r.exit_code == 2 and "--churn-horizon: Input should be less than or equal to 365" in (
        r.output
    )


def test_cli_training_options_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Settings] = []
    monkeypatch.setattr(
        "training.jobs.train_model",
        lambda model, settings, data, force: seen.append(settings) or TrainedModels(),
    )
    args = ["train", "all", "--as-of", "1998-04-01", "--conversion-horizon", "14",
            "--conversion-population", "60", "--churn-horizon", "30", "--churn-population",
            "120", "--repurchase-weeks", "6", "--repurchase-level", "category",
            "--recommender-test-days", "21"]  # fmt: skip
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 2  # nothing trained (the stub trains nothing)
    (s,) = seen
    assert s.train_as_of == datetime(1998, 4, 1)
    assert (s.conversion_horizon_days, s.conversion_population_days) == (14, 60)
    assert (s.churn_horizon_days, s.churn_population_days) == (30, 120)
    assert (s.repurchase_weeks, s.repurchase_level, s.recommender_test_days) == (6, "category", 21)


def test_training_window_cuts_the_shop_at_as_of(shop_dir: Path) -> None:
    from klantbeeld.errors import ConfigError
    from training.window import data_range, training_window

    shop = open_shop(shop_dir)
    full = data_range(shop)
    assert training_window(shop, Settings()) == (shop, full)
    cut, (start, end) = training_window(shop, Settings(train_as_of=datetime(1997, 9, 1, 12)))
    assert (start, end) == (full[0], datetime(1997, 9, 1, 12))
    assert cut.events[c.TS].max().to_pyarrow().as_py() < end
    with pytest.raises(ConfigError, match="no event before it"):
        training_window(shop, Settings(train_as_of=datetime(1996, 1, 1)))
