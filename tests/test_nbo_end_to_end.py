"""End to end on a generated demo shop: train -> load -> next-best-offers -> rules -> export.

``train_recommender`` (small settings) saves the served ``NextBestOffers``;
``load_next_best_offers`` finds it; ``export_recommendations`` writes the newsletter for
every customer. The file must honour every business rule of the placement.
"""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features import contract as c
from features.demo_shop.writer import generate_demo_shop
from features.shop import open_shop
from klantbeeld.errors import NotTrainedError
from klantbeeld.settings import Settings
from serving.context import build_context
from serving.export import export_recommendations, run_recommend
from serving.next_best_offer import load_next_best_offers, recommend_for
from serving.placements import load_placements
from serving.state import SQLiteStateStore
from training.recommender_job import model_dir, train_recommender

NOW = datetime(2026, 11, 1)  # the demo shop's events end just before this instant
REASON = r"^(for_you|bought_before|viewed|similar_to:I\d+|popular_in:.+)$"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("e2e")
    shop = root / "shop"
    generate_demo_shop(shop, n_customers=1500, seed=3, days=365, n_items=120)
    settings = Settings(
        home=root / "home",
        data_dir=shop,
        recommender_als_factors=8,
        recommender_als_iterations=5,
        recommender_ranker_estimators=20,
    )
    with pytest.raises(NotTrainedError, match="klantbeeld train recommender"):
        load_next_best_offers(settings)
    train_recommender(settings, log_to_mlflow=False)
    return settings, shop


@pytest.fixture(scope="module")
def shop_frames(trained) -> dict[str, pd.DataFrame]:
    _, shop = trained
    return {
        "customers": pd.read_parquet(shop / "customers.parquet"),
        "items": pd.read_parquet(shop / "items.parquet"),
        "events": pd.read_parquet(shop / "events"),
    }


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_model_is_saved_refreshed_and_loaded(trained):
    settings, _ = trained
    nbo = load_next_best_offers(settings)
    assert (model_dir(settings) / "params.json").is_file()
    # evaluated with sources fitted before T = 2026-10-17, served with histories to the end
    assert nbo.as_of_ == "2026-11-01T00:00:00"
    assert len(nbo.ids_.users) == 1500


def test_newsletter_export_honours_every_rule(trained, shop_frames, tmp_path):
    settings, shop = trained
    model = load_next_best_offers(settings)
    newsletter = load_placements().get("newsletter")
    out = tmp_path / "newsletter.ndjson"
    summary = export_recommendations(
        settings, "newsletter", "all", out, model=model, now=NOW, show_progress=False
    )
    lines = _lines(out)
    customers, items, events = shop_frames["customers"], shop_frames["items"], shop_frames["events"]
    no_consent = set(customers.loc[~customers[c.CONSENT_EMAIL], c.CUSTOMER_ID])
    assert summary.n_recipients == 1500
    assert summary.not_eligible_by_reason == {"no_email_consent": len(no_consent)}
    assert summary.n_lines == len(lines) == 1500 - len(no_consent)
    got = {line[c.CUSTOMER_ID] for line in lines}
    assert not got & no_consent

    durable = set(items.loc[items[c.DURABLE], c.ITEM_ID])
    buys = events[(events[c.EVENT_TYPE] == c.PURCHASE) & events[c.ITEM_ID].isin(durable)]
    bought_durable = set(zip(buys[c.CUSTOMER_ID], buys[c.ITEM_ID], strict=True))
    assert len(bought_durable) > 100  # the rule has something to exclude
    category = dict(zip(items[c.ITEM_ID], items[c.CATEGORY], strict=True))
    reasons: set[str] = set()
    for line in lines:
        recs = line["items"]
        assert line["eligible"] is True and line["placement"] == "newsletter"
        assert len(recs) == newsletter.n_items
        assert [r["rank"] for r in recs] == list(range(1, newsletter.n_items + 1))
        for r in recs:
            assert (line[c.CUSTOMER_ID], r[c.ITEM_ID]) not in bought_durable
            for key in ("score", "reason", "title", "url", "image_url", "price"):
                assert r[key] is not None, key
            assert pd.Series([r["reason"]]).str.match(REASON).all(), r["reason"]
            reasons.add(r["reason"].split(":")[0])
        per_cat = pd.Series([category[r[c.ITEM_ID]] for r in recs]).value_counts()
        assert per_cat.max() <= 2
    # the trained model, not only the popular fallback, filled the mails
    assert {"for_you", "viewed", "bought_before"} <= reasons


def test_sent_items_are_not_repeated_within_seven_days(trained, tmp_path):
    settings, _ = trained
    model = load_next_best_offers(settings)
    state = SQLiteStateStore(tmp_path / "state.sqlite")
    kw = dict(model=model, state=state, now=NOW, show_progress=False)
    first, second = tmp_path / "first.ndjson", tmp_path / "second.ndjson"
    export_recommendations(settings, "newsletter", "all", first, record_sends=True, **kw)
    export_recommendations(settings, "newsletter", "all", second, **kw)
    sent = {(x[c.CUSTOMER_ID], r[c.ITEM_ID]) for x in _lines(first) for r in x["items"]}
    again = {(x[c.CUSTOMER_ID], r[c.ITEM_ID]) for x in _lines(second) for r in x["items"]}
    assert len(sent) > 5000 and len(again) == len(sent)  # everyone still gets a full mail
    assert not sent & again
    # a week and a day later the first mail's items may come back
    later = tmp_path / "later.ndjson"
    kw["now"] = NOW + timedelta(days=8)
    export_recommendations(settings, "newsletter", "all", later, **kw)
    back = {(x[c.CUSTOMER_ID], r[c.ITEM_ID]) for x in _lines(later) for r in x["items"]}
    assert len(back & sent) > 1000


def test_sends_from_the_shop_table_are_excluded(trained, tmp_path):
    settings, shop = trained
    model = load_next_best_offers(settings)
    first = tmp_path / "first.ndjson"
    export_recommendations(
        settings, "newsletter", "all", first, model=model, now=NOW, show_progress=False
    )
    recs = pd.DataFrame(
        [(x[c.CUSTOMER_ID], r[c.ITEM_ID]) for x in _lines(first) for r in x["items"]],
        columns=[c.CUSTOMER_ID, c.ITEM_ID],
    )
    # the first item of every mail was sent 3 days ago, the second 8 days ago (shop table)
    rank = recs.groupby(c.CUSTOMER_ID).cumcount()
    sends = pd.concat(
        [
            recs[rank == 0].assign(**{c.TS: NOW - timedelta(days=3)}),
            recs[rank == 1].assign(**{c.TS: NOW - timedelta(days=8)}),
        ]
    ).assign(**{c.CAMPAIGN_ID: "K9", c.PLACEMENT: "newsletter"})
    copy = tmp_path / "shop"
    copy.mkdir()
    for name in ("customers.parquet", "items.parquet"):
        (copy / name).symlink_to(shop / name)
    (copy / "events").symlink_to(shop / "events")
    old = pd.read_parquet(shop / "sends.parquet")
    pd.concat([old, sends], ignore_index=True).to_parquet(copy / "sends.parquet")
    context = build_context(open_shop(copy), NOW)
    second = tmp_path / "second.ndjson"
    export_recommendations(
        settings,
        "newsletter",
        "all",
        second,
        model=model,
        context=context,
        now=NOW,
        show_progress=False,
    )
    again = {(x[c.CUSTOMER_ID], r[c.ITEM_ID]) for x in _lines(second) for r in x["items"]}
    three = set(zip(*[recs[rank == 0][k] for k in (c.CUSTOMER_ID, c.ITEM_ID)], strict=True))
    eight = set(zip(*[recs[rank == 1][k] for k in (c.CUSTOMER_ID, c.ITEM_ID)], strict=True))
    assert not three & again
    assert len(eight & again) > 0.5 * len(eight)


def test_unknown_customers_never_raise(trained, tmp_path):
    settings, _ = trained
    model = load_next_best_offers(settings)
    ids = tmp_path / "ids.csv"
    ids.write_text("customer_id\nC0000002\nNOBODY-1\nC0000002\nNOBODY-2\n")
    out = tmp_path / "mixed.csv"
    summary = export_recommendations(
        settings,
        "newsletter",
        ids,
        out,
        "csv",
        model=model,
        now=NOW,
        include_not_eligible=True,
        show_progress=False,
    )
    rows = list(csv.DictReader(out.open()))
    assert [r[c.CUSTOMER_ID] for r in rows] == ["C0000002", "NOBODY-1", "NOBODY-2"]
    assert [r["eligible"] for r in rows] == ["true", "false", "false"]
    assert [r["reason"] for r in rows[1:]] == ["unknown_customer", "unknown_customer"]
    assert summary.not_eligible_by_reason == {"unknown_customer": 2}
    assert rows[0]["item_6_id"] and rows[0]["item_6_title"] and rows[0]["item_6_price"]
    # on the web (no consent needed) an unknown visitor gets the popular fallback
    context = build_context(open_shop(settings.resolved_data_dir), NOW)
    res = recommend_for(["NOBODY-1"], "web_for_you", context=context, model=model)
    assert res[0].eligible and len(res[0].items) == 10
    assert {i.reason for i in res[0].items} == {"popular_in:all"}


def test_run_recommend_loads_the_model_itself(trained, tmp_path):
    settings, _ = trained
    out = tmp_path / "run.ndjson"
    summary = run_recommend(settings, "post_purchase", "all", out, show_progress=False)
    lines = _lines(out)
    assert summary.n_lines == len(lines) > 1000
    assert all(1 <= len(x["items"]) <= 4 for x in lines)
    with pytest.raises(NotTrainedError, match="holds no saved recommender"):
        run_recommend(settings, "newsletter", "all", out, model_path=tmp_path / "nothing")


def test_registered_champion_is_preferred_over_the_local_model(trained, tmp_path):
    _, shop = trained
    settings = Settings(
        home=tmp_path / "home",
        data_dir=shop,
        recommender_als_factors=8,
        recommender_als_iterations=5,
        recommender_ranker_estimators=20,
    )
    res = train_recommender(settings, log_to_mlflow=True)
    assert res.version == 1 and res.promoted
    # the local copy is gone: the loader must fetch the champion's artifact
    import shutil

    shutil.rmtree(model_dir(settings))
    nbo = load_next_best_offers(settings)
    assert (settings.home / "cache" / "recommender-v1" / "params.json").is_file()
    assert nbo.as_of_ == "2026-11-01T00:00:00"
    cands = nbo.rank(nbo.candidates(["C0000002"], n_per_source=5))
    assert len(cands) >= 5
