"""The 2-D array batch path gives exactly what the long-frame path gives.

``NextBestOffers.candidate_block`` + ``apply_rules(CandidateBlock)`` must return the same
recipients and items (order, scores, reasons, content) as ``rank(candidates())`` +
``apply_rules(candidate_block(DataFrame))`` -- with the blend and with a LambdaRank
re-ranker, for every packaged placement (source filters, carts, price bands, per-category
caps, fallback), with unknown customers and with sends and purchases recorded at run time.
The top-n helpers are checked against a brute-force ranking with many ties.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from models.recommender.base import decode_keys, desc_keys, top_n, top_n_sparse
from models.recommender.block import merge_lists
from models.recommender.interactions import IdMap
from models.recommender.next_best import NextBestOffers
from models.recommender.ranker import CandidateRanker
from serving.context import RecContext
from serving.next_best_offer import BlockCandidateModel, recommend_frame
from serving.placements import Placement, PriceBand, Rules, load_placements
from serving.state import SQLiteStateStore

NOW = datetime(2026, 6, 1)
N_CUST, N_ITEMS, N_CAT = 80, 60, 6


class FrameOnly:
    """The same model seen through the long-frame interface only."""

    def __init__(self, model: NextBestOffers) -> None:
        self.model = model

    def candidates(self, customer_ids, n_per_source=50):
        return self.model.candidates(customer_ids, n_per_source=n_per_source)

    def rank(self, candidates):
        return self.model.rank(candidates)


def _shop(seed: int = 7):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:02d}" for i in range(N_ITEMS)],
            "title": [f"Item {i}" for i in range(N_ITEMS)],
            "category": [f"cat{i % N_CAT}" for i in range(N_ITEMS)],
            "price": np.round(rng.uniform(1, 80, N_ITEMS), 2),
            "url": [f"https://shop.example/p/{i}" for i in range(N_ITEMS)],
            "image_url": [f"https://img.example/{i}.jpg" for i in range(N_ITEMS)],
            "active": rng.random(N_ITEMS) > 0.1,
            "durable": rng.random(N_ITEMS) < 0.2,
            "repurchasable": rng.random(N_ITEMS) < 0.4,
        }
    )
    customers = pd.DataFrame(
        {
            "customer_id": [f"c{u:03d}" for u in range(N_CUST)],
            "consent_email": rng.random(N_CUST) < 0.8,
            "consent_ads": rng.random(N_CUST) < 0.5,
        }
    )
    n_ev = 1500
    fav = rng.integers(0, N_CAT, N_CUST)
    cust = rng.integers(0, N_CUST - 5, n_ev)  # the last five customers have no events
    item = np.where(
        rng.random(n_ev) < 0.7,
        fav[cust] + N_CAT * rng.integers(0, N_ITEMS // N_CAT, n_ev),
        rng.integers(0, N_ITEMS, n_ev),
    )
    events = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[cust],
            "ts": [NOW - timedelta(days=float(d)) for d in rng.uniform(0.1, 120, n_ev)],
            "event_type": rng.choice(
                ["product_view", "add_to_cart", "purchase"], n_ev, p=[0.6, 0.2, 0.2]
            ),
            "item_id": items["item_id"].to_numpy()[item],
        }
    )
    sends = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[rng.integers(0, N_CUST, 200)],
            "ts": [NOW - timedelta(days=float(d)) for d in rng.uniform(0, 20, 200)],
            "item_id": items["item_id"].to_numpy()[rng.integers(0, N_ITEMS, 200)],
            "placement": rng.choice(["newsletter", "post_purchase"], 200),
        }
    )
    return items, customers, events, sends


@pytest.fixture(scope="module")
def shop():
    items, customers, events, sends = _shop()
    ids = IdMap(
        pd.Index(customers["customer_id"].to_numpy(dtype=object)),
        pd.Index(items["item_id"].to_numpy(dtype=object)),
    )
    nbo = NextBestOffers(
        {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
        n_per_source=8,
        als_factors=6,
        als_iterations=3,
        knn_k=6,
        random_state=0,
        als_candidate_items=40,  # ALS through its candidate pool, as at scale
    ).fit(events, ids, items, NOW)
    ctx = RecContext.from_events(NOW, customers, items, events, sends)
    return nbo, ctx, customers


@pytest.fixture(scope="module")
def reranked(shop):
    nbo, _, _ = shop
    rng = np.random.default_rng(1)
    truth = sparse.csr_matrix((rng.random((N_CUST + 1, N_ITEMS)) < 0.15).astype(np.float32))
    ranker = nbo.fit_ranker(
        np.arange(N_CUST), truth, CandidateRanker("lambdarank", n_estimators=15, random_state=0)
    )
    import copy

    out = copy.copy(nbo)
    out.ranker_ = ranker
    return out


def _recipients(customers: pd.DataFrame) -> list[str]:
    ids = customers["customer_id"].tolist()
    return ids[::-1] + ["nobody", "stranger"]  # not in model order; unknown customers


def _placements() -> list[Placement]:
    packaged = list(load_placements().placements.values())
    banded = Placement(
        name="banded",
        channel="web",
        n_items=5,
        candidate_sources=["als", "item_knn", "popular_in_segment"],
        n_per_source=6,
        max_candidates=7,
        rules=Rules(
            exclude_sent_days=10,
            sent_same_placement_only=True,
            max_per_category=1,
            price_band=PriceBand(min=10, max=60),
        ),
    )
    bare = Placement(
        name="bare",
        channel="ads",
        n_items=3,
        candidate_sources=["buy_again", "recently_viewed"],
        n_per_source=4,
        fallback="none",
        rules=Rules(exclude_purchased=None, exclude_sent_days=None, exclude_unavailable=False),
    )
    return [*packaged, banded, bare]


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.recipients, b.recipients)
    pd.testing.assert_frame_equal(a.recs, b.recs)


@pytest.mark.parametrize("which", ["blend", "lambdarank"])
def test_block_path_equals_frame_path_for_every_placement(shop, reranked, which):
    nbo, ctx, customers = shop
    model = nbo if which == "blend" else reranked
    assert model.ranker_.method == which
    assert isinstance(model, BlockCandidateModel)
    assert not isinstance(FrameOnly(model), BlockCandidateModel)
    recipients = _recipients(customers)
    n_recs = 0
    for pl in _placements():
        got = recommend_frame(recipients, pl, context=ctx, model=model)
        want = recommend_frame(recipients, pl, context=ctx, model=FrameOnly(model))
        _assert_same(got, want)
        n_recs += len(got.recs)
    assert n_recs > 500  # the comparison covers real output


def test_block_path_equals_frame_path_with_run_time_state(shop, tmp_path):
    nbo, ctx, customers = shop
    store = SQLiteStateStore(tmp_path / "state.db")
    rng = np.random.default_rng(3)
    ids = customers["customer_id"].to_numpy()[rng.integers(0, N_CUST, 120)]
    items = np.asarray([f"i{i:02d}" for i in rng.integers(0, N_ITEMS, 120)])
    store.record_sends(
        pd.DataFrame(
            {"customer_id": ids[:60], "item_id": items[:60], "placement": "newsletter", "ts": NOW}
        )
    )
    store.record_purchases(
        pd.DataFrame({"customer_id": ids[60:], "item_id": items[60:], "ts": NOW})
    )
    recipients = _recipients(customers)
    for name in ("newsletter", "cart_abandonment", "web_for_you"):
        got = recommend_frame(recipients, name, context=ctx, model=nbo, state=store)
        want = recommend_frame(recipients, name, context=ctx, model=FrameOnly(nbo), state=store)
        _assert_same(got, want)


@pytest.mark.parametrize("sources", [None, ["item_knn", "buy_again"], ["popular_in_segment"]])
def test_candidate_block_rows_equal_ranked_candidates(shop, sources):
    nbo, _, customers = shop
    ids = customers["customer_id"].tolist()[:40] + ["nobody"]
    block = nbo.candidate_block(ids, n_per_source=8, sources=sources)
    raw = nbo.candidates(ids, n_per_source=8)
    if sources is not None:
        raw = raw[raw["source"].isin(sources)]
    want = nbo.rank(raw).reset_index(drop=True)
    got = block.to_frame()
    pd.testing.assert_frame_equal(
        got[["customer_id", "item_id", "source", "reason"]],
        want[["customer_id", "item_id", "source", "reason"]],
    )
    np.testing.assert_array_equal(got["score"].to_numpy(), want["score"].to_numpy(float))
    if sources is not None:
        assert got["source"].isin(sources).all()
    # item-to-item reasons come from item_knn exactly when that source is asked for
    knn = sources is None or "item_knn" in sources
    assert got["reason"].str.startswith("similar_to:").any() == knn


def test_merge_lists_by_hand():
    # row 0: source A proposes 5, 2; source B proposes 2, 7 -> items 2, 5, 7
    # row 1: A proposes 3 (and a pad), B proposes nothing -> item 3
    a = np.array([[5, 2], [3, -1]])
    b = np.array([[2, 7], [-1, -1]])
    m = merge_lists([a, b], [a.astype(np.float32), b.astype(np.float32)], 3.0, with_scores=True)
    np.testing.assert_array_equal(m.items, [[2, 5, 7], [3, -1, -1]])
    np.testing.assert_array_equal(m.ranks, [[[2, 1], [1, 3], [3, 2]], [[1, 3], [3, 3], [3, 3]]])
    assert m.scores is not None
    np.testing.assert_array_equal(m.scores[0, :, 0], [2.0, 5.0, np.nan])
    blend = CandidateRanker("blend", k0=1.0).blend_ranks(m.ranks, ["a", "b"], 3.0)
    np.testing.assert_allclose(blend[0], [1 / 3 + 1 / 2, 1 / 2, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(blend[1], [1 / 2, 0, 0])


def _brute(s: np.ndarray, n: int) -> np.ndarray:
    out = np.full((s.shape[0], n), -1)
    for r in range(s.shape[0]):
        fin = np.flatnonzero(np.isfinite(s[r]))
        best = fin[np.lexsort((fin, -s[r, fin]))][:n]
        out[r, : len(best)] = best
    return out


@pytest.mark.parametrize("width", [7, 90, 700, 2003])
def test_top_n_dense_and_sparse_equal_brute_force_with_ties(width):
    rng = np.random.default_rng(width)
    s = np.round(rng.standard_normal((25, width)), 1).astype(np.float32)  # many ties
    s[rng.random(s.shape) < 0.5] = -np.inf
    s[3] = -np.inf
    s[4, ::3] = np.nan
    s[5, ::5] = np.inf
    s[6, :] = 0.5  # every entry ties
    for n in (1, 4, 12):
        want = _brute(s, n)
        ids, vals = top_n(s, n)
        np.testing.assert_array_equal(ids, want)
        ok = want >= 0
        np.testing.assert_array_equal(vals[ok], np.take_along_axis(s, np.maximum(want, 0), 1)[ok])
        assert (vals[~ok] == -np.inf).all()
        sp = sparse.csr_matrix(np.where(np.isneginf(s), 0, s))
        ids_sp, _ = top_n_sparse(sp, n)
        np.testing.assert_array_equal(ids_sp, _brute(np.where(sp.toarray() == 0, -np.inf, s), n))


def test_sort_keys_round_trip_and_order():
    v = np.array([3.5, -2.0, 0.0, -0.0, 1e-30, -1e30, 7.0, 3.5], dtype=np.float32)
    cols = np.arange(len(v))
    keys = desc_keys(v, cols)
    order = np.argsort(keys)
    np.testing.assert_array_equal(order, [6, 0, 7, 4, 2, 3, 1, 5])  # value desc, col asc
    got_cols, got_vals = decode_keys(keys)
    np.testing.assert_array_equal(got_cols, cols)
    np.testing.assert_array_equal(got_vals, v)
