"""The HTTP API: every route's happy path beside its 404/422/503 or not-eligible case.

Most tests run against a hand-made world of 4 customers and 8 items with a fake candidate
model whose ranking is known (I1 > I2 > ... > I8 for every known customer), swapped in
through ``app.dependency_overrides``. The last tests start the real app (lifespan) on a
generated 300-customer shop with a quickly trained recommender.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from features import contract as c
from klantbeeld.errors import ConfigError
from klantbeeld.settings import Settings
from serving.api.app import create_app
from serving.api.artifacts import RecommendationService
from serving.api.audience import AudienceIndex
from serving.api.batcher import MicroBatcher
from serving.api.deps import (
    get_audience,
    get_emails,
    get_now,
    get_recommender,
    get_scores,
    get_state,
)
from serving.api.email_index import EmailIndex
from serving.api.keys import SCOPES, KeyStore
from serving.api.metrics import BUCKETS, LatencyHistogram
from serving.api.scores import ScoreIndex
from serving.api.state_reader import FastStateReader
from serving.context import RecContext
from serving.placements import load_placements
from serving.state import SQLiteStateStore

NOW = datetime(2026, 11, 1)
ITEM_IDS = [f"I{k}" for k in range(1, 9)]
CUSTOMERS = pd.DataFrame(
    {
        c.CUSTOMER_ID: ["C1", "C2", "C3", "C4"],
        c.CONSENT_EMAIL: [True, False, True, True],
        c.CONSENT_ADS: [True, True, False, True],
        c.EMAIL: ["  Ann@Example.COM ", "bob@example.com", "cy@example.com", None],
        c.PHONE: ["06-1234 5678", "+31 6 2048 1937", None, "not a phone"],
    }
)
ITEMS = pd.DataFrame(
    {
        c.ITEM_ID: ITEM_IDS,
        c.TITLE: [f"Item {k}" for k in range(1, 9)],
        c.CATEGORY: ["toys", "toys", "baking", "baking", "gifts", "gifts", "kitchen", "kitchen"],
        c.PRICE: [30.0, 8.0, 4.5, 12.0, 6.0, 9.5, 20.0, 3.0],
        c.URL: [f"https://shop/{i}" for i in ITEM_IDS],
        c.IMAGE_URL: [f"https://img/{i}.jpg" for i in ITEM_IDS],
        c.DURABLE: [True] + [False] * 7,
    }
)
EVENTS = pd.DataFrame(
    {
        c.CUSTOMER_ID: ["C4"],
        c.TS: [NOW - timedelta(days=10)],
        c.EVENT_TYPE: [c.PURCHASE],
        c.ITEM_ID: ["I8"],
    }
)
# Batch scores in the layout of training.batch_score (C10 sorts between C1 and C2).
SCORES = pa.table(
    {
        c.CUSTOMER_ID: ["C2", "C10", "C1", "C3", "C4"],
        "conversion_intent_score": [0.7, 0.2, 0.9, 0.6, 0.5],
        "conversion_intent_model_version": pa.array([3] * 5, pa.int32()),
        "conversion_intent_top_up": [
            ["recency_days", "n_sessions_30d"],
            [],
            ["n_views_7d"],
            None,
            ["a", "b", "c"],
        ],
        "conversion_intent_top_down": [["tenure_days"], ["recency_days"], [], [], []],
        "churn_score": [0.1, 0.8, 0.05, float("nan"), 0.3],
        "churn_model_version": pa.array([7] * 5, pa.int32()),
        "churn_top_up": [["recency_days"], [], [], [], []],
        "churn_top_down": [[], [], [], [], []],
    }
)


class FakeModel:
    """Candidates I1..I8 with scores 0.9, 0.8, ... for every known customer (source als)."""

    def __init__(self, known: Sequence[str]) -> None:
        self.known = set(known)

    def candidates(self, customer_ids: Sequence[str], n_per_source: int = 50) -> pd.DataFrame:
        ids = [i for i in customer_ids if i in self.known]
        return pd.DataFrame(
            {
                c.CUSTOMER_ID: np.repeat(ids, len(ITEM_IDS)),
                c.ITEM_ID: ITEM_IDS * len(ids),
                "score": [0.9 - 0.1 * k for k in range(len(ITEM_IDS))] * len(ids),
                "source": "als",
                "reason": "for_you",
            }
        )

    def rank(self, candidates: pd.DataFrame) -> pd.DataFrame:
        return candidates.sort_values([c.CUSTOMER_ID, "score"], ascending=[True, False])


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    async def __call__(self) -> datetime:
        return self.now


def keyed_client(app, scopes: Sequence[str] = SCOPES) -> TestClient:
    """A test client sending a real key with ``scopes``, created in the app's key file."""
    key = KeyStore(app.state.settings.resolved_api_keys_file).create(frozenset(scopes))
    return TestClient(app, headers={"X-API-Key": key})


@pytest.fixture()
def world(tmp_path: Path):
    pq.write_table(SCORES, tmp_path / "scores.parquet")
    scores = ScoreIndex.open(tmp_path / "scores.parquet", tmp_path / "cache")
    context = RecContext.from_events(NOW, CUSTOMERS, ITEMS, EVENTS)
    state = FastStateReader(SQLiteStateStore(tmp_path / "state.sqlite"))
    service = RecommendationService(
        context, FakeModel(CUSTOMERS[c.CUSTOMER_ID]), load_placements(), state
    )
    audience = AudienceIndex(CUSTOMERS, scores)
    clock = Clock()
    app = create_app(Settings(home=tmp_path / "home"))
    app.dependency_overrides.update(
        {
            get_scores: lambda: scores,
            get_recommender: lambda: service,
            get_state: lambda: state,
            get_audience: lambda: audience,
            get_emails: lambda: EmailIndex(CUSTOMERS),
            get_now: clock,
        }
    )
    with keyed_client(app) as client:
        yield client, clock, state


def _items(body: dict) -> list[str]:
    return [i[c.ITEM_ID] for i in body["items"]]


def _recs(client: TestClient, cid: str, **params) -> dict:
    r = client.get(f"/v1/customers/{cid}/recommendations", params={"n": 4, **params})
    assert r.status_code == 200, r.text
    return r.json()


# -- health and metrics ----------------------------------------------------------------------
def test_health_reports_missing_artifacts_as_degraded(world):
    client, _, _ = world
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"  # the app's own loading found no shop in tmp home
    assert body["components"]["scores"]["ok"] is False
    assert "klantbeeld score" in body["components"]["scores"]["detail"]


def test_latency_histogram_counts_requests_per_route_template(world):
    client, _, _ = world
    for _ in range(3):
        client.get("/health")
    client.get("/v1/customers/C1/scores")
    client.get("/v1/customers/C2/scores")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    metric = "klantbeeld_http_request_duration_seconds"
    health = 'method="GET",route="/health"'
    scores = 'method="GET",route="/v1/customers/{customer_id}/scores"'
    assert lines[f"{metric}_count{{{health}}}"] == "3"
    assert lines[f'{metric}_bucket{{{health},le="+Inf"}}'] == "3"
    assert lines[f"{metric}_count{{{scores}}}"] == "2"  # ids never become labels
    assert lines[f'{metric}_count{{method="*",route="<unmatched>"}}'] == "1"
    assert float(lines[f"{metric}_sum{{{health}}}"]) > 0
    assert "C1" not in text


def test_histogram_buckets_and_sharing_between_workers(tmp_path):
    keys = [("GET", "/a")]
    one, two = LatencyHistogram(keys, tmp_path), LatencyHistogram(keys, tmp_path)
    two.data = np.lib.format.open_memmap(  # a second worker writes its own file
        tmp_path / "worker-999999.npy", mode="w+", dtype=np.float64, shape=one.data.shape
    )
    one.observe("GET", "/a", 0.0004)
    one.observe("GET", "/a", 0.003)
    two.observe("GET", "/a", 0.003)
    two.observe("GET", "/b", 7.0)
    total = one.totals()
    assert total[0, : len(BUCKETS) + 1].tolist() == [1, 0, 0, 2] + [0] * (len(BUCKETS) - 3)
    assert total[1, len(BUCKETS)] == 1  # unknown route, above the last bucket: +Inf
    assert total[0, -1] == pytest.approx(0.0064)


# -- scores ----------------------------------------------------------------------------------
def test_scores_of_a_customer_with_versions_and_explanations(world):
    client, _, _ = world
    r = client.get("/v1/customers/C2/scores")
    assert r.status_code == 200
    assert r.json() == {
        "customer_id": "C2",
        "as_of": None,
        "scores": {
            "conversion_intent": {
                "score": 0.7,
                "model_version": 3,
                "top_up": ["recency_days", "n_sessions_30d"],
                "top_down": ["tenure_days"],
            },
            "churn": {"score": 0.1, "model_version": 7, "top_up": ["recency_days"], "top_down": []},
        },
    }
    c3 = client.get("/v1/customers/C3/scores").json()["scores"]
    assert c3["churn"]["score"] is None and c3["conversion_intent"]["top_up"] == []


def test_scores_unknown_customer_is_404(world):
    client, _, _ = world
    for cid in ("C5", "C", "C100000000000000000000"):
        r = client.get(f"/v1/customers/{cid}/scores")
        assert r.status_code == 404
        assert r.json()["type"] == "not_found"


def test_scores_without_a_scores_file_is_503(tmp_path):
    with keyed_client(create_app(Settings(home=tmp_path))) as client:
        r = client.get("/v1/customers/C1/scores")
    assert r.status_code == 503
    assert "klantbeeld score" in r.json()["detail"]


def test_score_index_lookup_many_and_cache_reuse(tmp_path):
    pq.write_table(SCORES, tmp_path / "s.parquet")
    a = ScoreIndex.open(tmp_path / "s.parquet", tmp_path / "cache")
    b = ScoreIndex.open(tmp_path / "s.parquet", tmp_path / "cache")
    assert a.folder == b.folder and len(list((tmp_path / "cache").iterdir())) == 1
    assert a.ids.tolist() == [b"C1", b"C10", b"C2", b"C3", b"C4"]
    assert a.positions(["C4", "nope", "C1", "", "C10"]).tolist() == [4, -1, 0, -1, 1]
    assert isinstance(a.score_array("churn"), np.memmap)


# -- recommendations -------------------------------------------------------------------------
def test_recommendations_follow_the_ranking_and_the_category_cap(world):
    client, _, _ = world
    body = _recs(client, "C1", n=6)
    assert body["eligible"] is True and body["reason"] is None
    assert body["content_block"] == "general"
    assert _items(body) == ["I1", "I2", "I3", "I4", "I5", "I6"]  # 2 per category at most
    first = body["items"][0]
    assert first == {
        "rank": 1,
        "item_id": "I1",
        "score": pytest.approx(0.9),
        "reason": "for_you",
        "title": "Item 1",
        "url": "https://shop/I1",
        "image_url": "https://img/I1.jpg",
        "price": 30.0,
        "category": "toys",
    }
    assert _items(_recs(client, "C1")) == ["I1", "I2", "I3", "I4"]


def test_no_consent_and_unknown_customers_are_not_eligible_not_errors(world):
    client, _, _ = world
    no_consent = _recs(client, "C2")
    assert (no_consent["eligible"], no_consent["reason"], no_consent["items"]) == (
        False,
        "no_email_consent",
        [],
    )
    unknown = _recs(client, "C999")
    assert (unknown["eligible"], unknown["reason"]) == (False, "unknown_customer")
    # on the website no consent is needed: the unknown visitor gets what is popular
    web = _recs(client, "C999", placement="web_for_you")
    assert web["eligible"] is True
    assert [(i[c.ITEM_ID], i["reason"]) for i in web["items"]] == [("I8", "popular_in:all")]


def test_unknown_placement_and_bad_n_are_422(world):
    client, _, _ = world
    r = client.get("/v1/customers/C1/recommendations", params={"placement": "nope"})
    assert r.status_code == 422
    assert "newsletter" in r.json()["detail"]  # names the declared placements
    assert client.get("/v1/customers/C1/recommendations", params={"n": 0}).status_code == 422


def test_batch_equals_singles(world):
    client, _, _ = world
    ids = ["C1", "C2", "C999", "C3", "C1"]
    r = client.post(
        "/v1/recommendations/batch", json={"placement": "newsletter", "customer_ids": ids, "n": 4}
    )
    assert r.status_code == 200
    body = r.json()
    assert (body["n_recipients"], body["n_eligible"], body["n_sends_recorded"]) == (4, 2, 0)
    singles = [_recs(client, cid) for cid in ["C1", "C2", "C999", "C3"]]
    assert body["results"] == singles


def test_concurrent_single_requests_are_computed_in_one_call():
    context = RecContext.from_events(NOW, CUSTOMERS, ITEMS, EVENTS)
    service = RecommendationService(
        context, FakeModel(CUSTOMERS[c.CUSTOMER_ID]), load_placements(), None
    )
    calls: list[list[str]] = []
    plain = service.recommend

    def spy(ids, placement, *, n=None, now=None):
        calls.append(list(ids))
        return plain(ids, placement, n=n, now=now)

    service.recommend = spy  # type: ignore[method-assign]
    ids = ["C1", "C2", "C999", "C3", "C1"]

    async def main():
        batcher = MicroBatcher()
        got = await asyncio.gather(
            *(batcher.recommend(service, cid, "newsletter", 4, NOW) for cid in ids)
        )
        bad = await asyncio.gather(
            batcher.recommend(service, "C1", "nope", None, NOW), return_exceptions=True
        )
        await batcher.close()
        return got, bad

    got, bad = asyncio.run(main())
    assert calls == [ids, ["C1"]]  # five requests, one call (then the bad placement)
    assert [r.customer_id for r in got] == ids
    singles = {cid: plain([cid], "newsletter", n=4, now=NOW)[0] for cid in ids}
    assert got == [singles[cid] for cid in ids]
    assert isinstance(bad[0], ConfigError) and "nope" in str(bad[0])


def test_batch_bounds_are_422(world):
    client, _, _ = world
    too_many = {"placement": "newsletter", "customer_ids": [f"C{i}" for i in range(1001)]}
    assert client.post("/v1/recommendations/batch", json=too_many).status_code == 422
    empty = {"placement": "newsletter", "customer_ids": []}
    assert client.post("/v1/recommendations/batch", json=empty).status_code == 422
    extra = {"placement": "newsletter", "customer_ids": ["C1"], "typo": 1}
    assert client.post("/v1/recommendations/batch", json=extra).status_code == 422


def test_batch_record_sends_excludes_the_sent_items_next_time(world):
    client, _, state = world
    r = client.post(
        "/v1/recommendations/batch",
        json={
            "placement": "newsletter",
            "customer_ids": ["C1", "C2"],
            "n": 4,
            "record_sends": True,
        },
    )
    assert r.json()["n_sends_recorded"] == 4  # C2 is not eligible: nothing sent
    assert sorted(state.recent_sends(NOW - timedelta(days=1))[c.ITEM_ID]) == [
        "I1",
        "I2",
        "I3",
        "I4",
    ]
    assert _items(_recs(client, "C1")) == ["I5", "I6", "I7", "I8"]


# -- events ----------------------------------------------------------------------------------
def test_posted_purchase_of_a_durable_removes_it_at_once_and_for_good(world):
    client, clock, _ = world
    assert _items(_recs(client, "C1"))[0] == "I1"
    r = client.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event_type": "purchase",
                    "customer_id": "C1",
                    "item_id": "I1",
                    "ts": "2026-11-01T09:30:00+01:00",
                }
            ]
        },
    )
    assert r.status_code == 200 and (r.json()["purchases"], r.json()["sends"]) == (1, 0)
    assert _items(_recs(client, "C1")) == ["I2", "I3", "I4", "I5"]
    clock.now = NOW + timedelta(days=400)
    assert "I1" not in _items(_recs(client, "C1", n=8))


def test_posted_send_removes_the_item_for_seven_days(world):
    client, clock, _ = world
    r = client.post(
        "/v1/events",
        json={
            "events": [
                {
                    "event_type": "send",
                    "customer_id": "C1",
                    "item_id": "I2",
                    "placement": "newsletter",
                }
            ]
        },
    )
    assert (r.json()["purchases"], r.json()["sends"]) == (0, 1)  # stamped with the clock: NOW
    clock.now = NOW + timedelta(days=6, hours=23)
    assert _items(_recs(client, "C1")) == ["I1", "I3", "I4", "I5"]
    clock.now = NOW + timedelta(days=7, hours=1)
    assert _items(_recs(client, "C1")) == ["I1", "I2", "I3", "I4"]
    assert _items(_recs(client, "C3")) == ["I1", "I2", "I3", "I4"]  # only C1's mail


def test_bad_events_are_422_and_nothing_is_stored(world):
    client, _, state = world
    bad = {
        "events": [
            {"event_type": "purchase", "customer_id": "C1", "item_id": "I3"},
            {"event_type": "purchase", "customer_id": "C1"},  # no item_id
        ]
    }
    r = client.post("/v1/events", json=bad)
    assert r.status_code == 422 and "item_id" in r.text
    assert client.post("/v1/events", json={"events": []}).status_code == 422
    assert len(state.recent_purchases(NOW - timedelta(days=365))) == 0


def test_fast_state_reader_answers_like_the_store(tmp_path):
    store = SQLiteStateStore(tmp_path / "s.sqlite")
    fast = FastStateReader(store)
    assert len(fast.recent_sends(NOW, ["C1"])) == 0  # before anything was written
    store.record_sends(
        pd.DataFrame(
            {
                c.CUSTOMER_ID: ["C1", "C2", "C1"],
                c.ITEM_ID: ["I1", "I2", "I3"],
                c.PLACEMENT: ["newsletter", None, "web_for_you"],
                c.TS: [NOW, NOW, NOW - timedelta(days=3)],
            }
        )
    )
    store.record_purchases(pd.DataFrame({c.CUSTOMER_ID: ["C2"], c.ITEM_ID: ["I5"], c.TS: [NOW]}))
    since = NOW - timedelta(days=7)
    for ids in (["C1"], ["C2", "C9"], None, [f"C{i}" for i in range(600)]):
        pd.testing.assert_frame_equal(
            fast.recent_sends(since, ids).reset_index(drop=True),
            store.recent_sends(since, ids).reset_index(drop=True),
        )
        pd.testing.assert_frame_equal(
            fast.recent_purchases(since, ids), store.recent_purchases(since, ids)
        )
    assert fast.recent_sends(NOW - timedelta(days=1), ["C1"])[c.ITEM_ID].tolist() == ["I1"]


# -- audiences -------------------------------------------------------------------------------
def _csv(r) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(r.text), dtype=str, keep_default_na=False)


def test_audience_is_score_threshold_with_consent(world):
    client, _, _ = world
    r = client.get("/v1/audiences/conversion_intent", params={"min_score": 0.5})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    # >= 0.5: C1 .9, C2 .7, C3 .6 (no ads consent), C4 .5; C10 is not in the customer table
    assert _csv(r)[c.CUSTOMER_ID].tolist() == ["C1", "C2", "C4"]
    assert r.headers["x-audience-size"] == "3"
    email = client.get(
        "/v1/audiences/conversion_intent", params={"min_score": 0.6, "consent": "email"}
    )
    assert _csv(email)[c.CUSTOMER_ID].tolist() == ["C1", "C3"]
    churn = client.get("/v1/audiences/churn", params={"min_score": 0.0})
    assert _csv(churn)[c.CUSTOMER_ID].tolist() == ["C1", "C2", "C4"]  # NaN score: no member


def test_audience_export_route_is_hashed_consented_and_same_as_library(world):
    client, _, _ = world
    r = client.get("/v1/audiences/likely_buyers/export", params={"layout": "meta"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = _csv(r)
    assert rows.columns.tolist() == ["email", "phone"]
    # likely_buyers keeps 95% of expected conversions: C1 .9, C2 .7, C3 .6, C4 .5 sum to
    # 2.7 < .95 * 2.9, so C10 (.2) is needed and all five are above the threshold. C3 has
    # no ads consent, C10 no customer row, C1's phone 06-1234 5678 is the placeholder
    # 0612345678 (fake: left out), C4 has no usable identifier. Left: C2, whose holdout
    # draw for likely_buyers is 0.28 (>= the 0.1 share: exported).
    bob = hashlib.sha256(b"bob@example.com").hexdigest()
    bob_phone = hashlib.sha256(b"31620481937").hexdigest()
    assert rows.values.tolist() == [[bob, bob_phone]]
    assert r.headers["x-audience-size"] == "1" and r.headers["x-audience-holdout"] == "0"
    assert float(r.headers["x-audience-threshold"]) == pytest.approx(0.2)
    assert "bob" not in r.text and "C2" not in r.text
    assert client.get("/v1/audiences/no_such/export").status_code == 404
    assert (
        client.get("/v1/audiences/likely_buyers/export", params={"layout": "x"}).status_code == 422
    )


def test_audience_unknown_model_is_404_and_bad_params_422(world):
    client, _, _ = world
    r = client.get("/v1/audiences/lifetime_value")
    assert r.status_code == 404 and "conversion_intent" in r.json()["detail"]
    assert client.get("/v1/audiences/churn", params={"consent": "sms"}).status_code == 422
    assert client.get("/v1/audiences/churn", params={"min_score": 1.5}).status_code == 422


# -- the real app: lifespan loading from a shop, a scores file and a trained recommender ------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from features.demo_shop.writer import generate_demo_shop
    from training.recommender_job import train_recommender

    root = tmp_path_factory.mktemp("served")
    generate_demo_shop(root / "shop", n_customers=300, seed=5, days=365, n_items=120)
    settings = Settings(
        home=root / "home",
        data_dir=root / "shop",
        recommender_als_factors=8,
        recommender_als_iterations=3,
        recommender_ranker_estimators=10,
    )
    customers = pd.read_parquet(root / "shop" / "customers.parquet")
    ids = customers[c.CUSTOMER_ID].tolist()
    table = pa.table(
        {
            c.CUSTOMER_ID: ids,
            "churn_score": np.linspace(0.0, 1.0, len(ids)),
            "churn_model_version": pa.array([1] * len(ids), pa.int32()),
        }
    )
    (settings.home / "scores").mkdir(parents=True)
    pq.write_table(table, settings.home / "scores" / "customer_scores_as_of=2026-10-01.parquet")
    with keyed_client(create_app(settings)) as client:  # no recommender yet
        consented = customers.loc[customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].iloc[0]
        untrained = (
            client.get("/health").json(),
            client.get(f"/v1/customers/{consented}/recommendations"),
            client.get("/v1/ready"),
        )
    train_recommender(settings, log_to_mlflow=False)
    return settings, customers, untrained


def test_real_app_without_recommender_serves_flagged_fallbacks_and_is_not_ready(served):
    _, _, (health, recs, ready) = served
    assert health["status"] == "degraded"
    assert health["components"]["scores"]["ok"] and health["components"]["audience"]["ok"]
    assert not health["components"]["recommender"]["ok"]
    assert ready.status_code == 503 and not ready.json()["ready"]
    assert "klantbeeld train recommender" in ready.json()["problems"]["recommender"]
    assert recs.status_code == 200, recs.text
    body = recs.json()
    assert body["fallback"] is True and body["eligible"]
    assert body["items"] and all(i["reason"].startswith("popular_in:") for i in body["items"])


def test_real_app_serves_scores_audience_and_recommendations(served):
    settings, customers, _ = served
    with keyed_client(create_app(settings)) as client:
        assert client.get("/health").json()["status"] == "ok"
        assert client.get("/v1/ready").json() == {"ready": True, "problems": {}}
        ids = customers[c.CUSTOMER_ID].tolist()
        assert client.get(f"/v1/customers/{ids[299]}/scores").json()["scores"]["churn"][
            "score"
        ] == pytest.approx(1.0)
        got = _csv(client.get("/v1/audiences/churn", params={"min_score": 0.5}))
        top = customers.iloc[150:]  # linspace: scores >= 0.5 from row 150 on
        assert got[c.CUSTOMER_ID].tolist() == sorted(top.loc[top[c.CONSENT_ADS], c.CUSTOMER_ID])

        consent = customers.loc[customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].tolist()
        batch_ids = (
            consent[:15] + customers.loc[~customers[c.CONSENT_EMAIL], c.CUSTOMER_ID].tolist()[:5]
        )
        batch = client.post(
            "/v1/recommendations/batch", json={"placement": "newsletter", "customer_ids": batch_ids}
        ).json()
        assert batch["n_eligible"] == 15
        assert batch["results"] == [_recs(client, cid, n=6) for cid in batch_ids]

        cid = consent[0]
        first = _items(_recs(client, cid, n=6))[0]
        client.post(
            "/v1/events",
            json={"events": [{"event_type": "purchase", "customer_id": cid, "item_id": first}]},
        )
        assert first not in _items(_recs(client, cid, n=6))


def test_serve_hands_the_same_settings_to_worker_processes(tmp_path, monkeypatch):
    from serving.api.serve import settings_env

    original = Settings(
        home=tmp_path / "h",
        data_dir=tmp_path / "d",
        seed=7,
        recommender_event_weights={"purchase": 4.0},
        phone_default_region="BE",
    )
    for key in list(os.environ):
        if key.startswith("KLANTBEELD_"):
            monkeypatch.delenv(key)
    for key, value in settings_env(original).items():
        monkeypatch.setenv(key, value)
    assert Settings().model_dump() == original.model_dump()
