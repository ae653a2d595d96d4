"""The online path (precomputed candidate tables + numpy rules) answers exactly as before.

``serving.nbo_online.OnlineNextBestOffers`` must give the same ``RecipientResult``s as
``serving.next_best_offer.recommend_for`` (candidates from the model + ``apply_rules``) for
every customer of a small shop, unknown ones included, for every packaged placement and
two more that switch on the remaining rules (price band, same-placement sends, no
fallback), with the blend and with a LambdaRank re-ranker, one recipient at a time and in
batches, with sends, purchases and consent changes recorded at run time, and with no
model at all. The tables themselves must equal the model's candidate blocks, be written
once into the model folder (two processes build different tables at once) and be
memory-mapped when read back.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from features import contract as c
from models.recommender.block import DEFERRED
from models.recommender.interactions import IdMap
from models.recommender.nbo_table import TABLE_DIR, build_table, cached_table, cached_tables
from models.recommender.next_best import NextBestOffers
from models.recommender.ranker import CandidateRanker
from serving.context import RecContext
from serving.nbo_online import OnlineNextBestOffers
from serving.next_best_offer import recommend_for
from serving.online_overrides import consent_context
from serving.placements import Placement, PlacementConfig, PriceBand, Rules, load_placements
from serving.state import ConsentOverride, SQLiteStateStore

NOW = datetime(2026, 6, 1)
N_CUST, N_ITEMS, N_CAT = 90, 60, 6


def _shop(seed: int = 11):
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{i:02d}" for i in range(N_ITEMS)],
            "title": [f"Item {i}" if i % 7 else None for i in range(N_ITEMS)],
            "category": [f"cat{i % N_CAT}" for i in range(N_ITEMS)],
            "price": [np.nan if i % 11 == 0 else round(1 + 1.3 * i, 2) for i in range(N_ITEMS)],
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
    n_ev = 2000
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
            "ts": [NOW - timedelta(days=float(d)) for d in rng.uniform(0.05, 90, n_ev)],
            "event_type": rng.choice(
                ["product_view", "add_to_cart", "purchase"], n_ev, p=[0.55, 0.25, 0.2]
            ),
            "item_id": items["item_id"].to_numpy()[item],
        }
    )
    sends = pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[rng.integers(0, N_CUST, 250)],
            "ts": [NOW - timedelta(days=float(d)) for d in rng.uniform(0, 20, 250)],
            "item_id": items["item_id"].to_numpy()[rng.integers(0, N_ITEMS, 250)],
            "placement": rng.choice(["newsletter", "post_purchase", "banded"], 250),
        }
    )
    return items, customers, events, sends


@pytest.fixture(scope="module")
def shop():
    items, customers, events, sends = _shop()
    # the model knows one item fewer than the catalogue and a customer the shop lost
    ids = IdMap(
        pd.Index([*customers["customer_id"].to_numpy(dtype=object), "c999"]),
        pd.Index(items["item_id"].to_numpy(dtype=object)),
    )
    nbo = NextBestOffers(
        {"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0},
        n_per_source=8,
        als_factors=6,
        als_iterations=3,
        knn_k=6,
        random_state=0,
        als_candidate_items=40,
    ).fit(events, ids, items, NOW)
    ctx = RecContext.from_events(NOW, customers, items[items["item_id"] != "i05"], events, sends)
    rng = np.random.default_rng(1)
    truth = sparse.csr_matrix((rng.random((N_CUST + 2, N_ITEMS)) < 0.15).astype(np.float32))
    reranked = copy.copy(nbo)
    reranked.ranker_ = nbo.fit_ranker(
        np.arange(N_CUST), truth, CandidateRanker("lambdarank", n_estimators=15, random_state=0)
    )
    return nbo, reranked, ctx, customers


def _config() -> PlacementConfig:
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
    return PlacementConfig(placements={p.name: p for p in [*packaged, banded, bare]})


def _recipients(customers: pd.DataFrame) -> list[str]:
    ids = customers["customer_id"].tolist()
    return ids[::-1] + ["c999", "nobody", "stranger", ids[3]]  # unknowns, one repeat


def _compare(online, model, ctx, recipients, state=None, now=None, singles=True) -> int:
    """Assert equal answers for every placement (batch and one by one); returns items."""
    n_items = 0
    for pl in online_config.placements.values():
        want = recommend_for(recipients, pl, context=ctx, model=model, state=state, now=now)
        got = online.recommend(recipients, pl, context=ctx, state=state, now=now)
        assert got == want, pl.name
        n_items += sum(len(r.items) for r in want)
        for cid in recipients[:: 3 if singles else len(recipients)]:
            one = recommend_for([cid], pl, context=ctx, model=model, state=state, now=now)
            assert online.recommend([cid], pl, context=ctx, state=state, now=now) == one
    return n_items


online_config = _config()


@pytest.mark.parametrize("which", ["blend", "lambdarank"])
def test_online_equals_frame_path_for_every_placement(shop, which):
    nbo, reranked, ctx, customers = shop
    model = nbo if which == "blend" else reranked
    online = OnlineNextBestOffers(ctx, model, online_config)
    recipients = _recipients(customers)
    assert _compare(online, model, ctx, recipients) > 1500  # real output is compared
    carts = online.recommend(recipients, online_config.get("cart_abandonment"))
    assert sum(r.eligible for r in carts) >= 5  # open carts are part of the comparison
    assert any(i.reason == "in_cart" for r in carts for i in r.items)
    banded = online.recommend(recipients, online_config.get("banded"))
    assert any(r.items for r in banded)
    # the tables were built for the placements, not per call
    assert online.table(online_config.get("newsletter")) is not None


def test_online_equals_frame_path_with_run_time_state_and_consent(shop, tmp_path):
    nbo, _, ctx, customers = shop
    store = SQLiteStateStore(tmp_path / "state.db")
    rng = np.random.default_rng(3)
    ids = customers["customer_id"].to_numpy()[rng.integers(0, N_CUST, 160)]
    items = np.asarray([f"i{i:02d}" for i in rng.integers(0, N_ITEMS, 160)])
    store.record_sends(
        pd.DataFrame(
            {
                "customer_id": ids[:80],
                "item_id": items[:80],
                "placement": np.where(np.arange(80) % 2, "newsletter", "banded"),
                "ts": NOW - timedelta(hours=1),
            }
        )
    )
    store.record_purchases(
        pd.DataFrame({"customer_id": ids[80:], "item_id": items[80:], "ts": NOW})
    )
    # consent changed online: the context copy the API builds per call
    flips = {
        cid: ConsentOverride(
            consent_email=not bool(ctx.consent[c.CONSENT_EMAIL][k]), consent_ads=None
        )
        for k, cid in enumerate(customers["customer_id"].tolist()[:30])
    }
    view = consent_context(ctx, flips)
    assert view is not ctx
    online = OnlineNextBestOffers(ctx, nbo, online_config)
    recipients = _recipients(customers)
    later = NOW + timedelta(days=2)
    assert _compare(online, nbo, view, recipients, state=store, now=later) > 1500
    # run-time purchases and sends did change the answer (so the comparison covers them)
    without = online.recommend(recipients, online_config.get("newsletter"), now=later)
    with_state = online.recommend(
        recipients, online_config.get("newsletter"), state=store, now=later
    )
    assert without != with_state


def test_online_without_model_and_beyond_table_width(shop):
    nbo, _, ctx, customers = shop
    recipients = _recipients(customers)
    fallback_only = OnlineNextBestOffers(ctx, None, online_config)
    assert _compare(fallback_only, None, ctx, recipients, singles=False) > 500
    online = OnlineNextBestOffers(ctx, nbo, online_config, min_width=5)
    declared = online_config.get("web_for_you")
    assert online.table(declared).width == declared.max_candidates + 1  # + the unknown item
    # ``n`` above the declared size (the API's ``?n=``) asks for more than the table holds
    wide = declared.model_copy(update={"n_items": 90, "max_candidates": 90})
    assert online.table(wide) is None
    want = recommend_for(recipients, wide, context=ctx, model=nbo)
    assert online.recommend(recipients, wide) == want


def test_table_rows_equal_candidate_blocks_and_are_cached_memory_mapped(shop, tmp_path):
    nbo, reranked, _, _ = shop
    reranked.save(tmp_path / "model")
    loaded = NextBestOffers.load(tmp_path / "model")
    sources = ("item_knn", "als", "recently_viewed")
    stale = tmp_path / "model" / TABLE_DIR / "v0-n6-w12-als-0123456789ab"  # an older format
    stale.mkdir(parents=True)
    first = cached_table(loaded, 6, sources, 12)
    folders = list((tmp_path / "model" / TABLE_DIR).glob("v*"))
    assert len(folders) == 1 and not stale.exists()
    again = cached_table(loaded, 6, sources[::-1], 12)  # same sources, other order
    assert isinstance(again.items, np.memmap)
    assert list((tmp_path / "model" / TABLE_DIR).glob("v*")) == folders
    fresh = build_table(loaded, 6, sources, 12)
    for name in ("items", "score", "reason"):
        np.testing.assert_array_equal(getattr(first, name), getattr(fresh, name))
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
    ids = np.asarray([*loaded.ids_.users, "someone-new"], dtype=object)
    block = loaded.candidate_block(ids, n_per_source=6, sources=sources)
    w = min(12, block.items.shape[1])
    np.testing.assert_array_equal(fresh.items[:, :w], block.items[:, :w])
    np.testing.assert_array_equal(fresh.score[:, :w], block.score[:, :w])
    np.testing.assert_array_equal(fresh.reason[:, :w], block.reason[:, :w])
    assert (fresh.reason == DEFERRED).sum() > 50  # item-kNN reasons are left to the request
    assert (fresh.items[:, w:] == -1).all()
    assert (fresh.items >= 0).sum() > 500
    # an in-memory model (no folder) gets an in-memory table with the same rows
    in_memory = cached_table(reranked, 6, sources, 12)
    np.testing.assert_array_equal(in_memory.items, fresh.items)


def test_tables_busy_in_another_process_are_waited_for_last(shop, tmp_path):
    import fcntl
    import threading

    from models.recommender.nbo_table import _fingerprint, table_key

    nbo, _, _, _ = shop
    nbo.save(tmp_path / "model")
    loaded = NextBestOffers.load(tmp_path / "model")
    specs = [(5, ("als",), 8), (5, ("item_knn",), 8)]
    root = tmp_path / "model" / TABLE_DIR
    names = [f"{table_key(*s)}-{_fingerprint(tmp_path / 'model')}" for s in specs]
    root.mkdir(parents=True)
    done: list = []
    with open(root / f".{names[0]}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # "another worker" is building the first table
        worker = threading.Thread(target=lambda: done.append(cached_tables(loaded, specs)))
        worker.start()
        for _ in range(600):
            if (root / names[1] / "table.json").is_file():
                break
            worker.join(0.05)
        assert (root / names[1] / "table.json").is_file()  # the free one was built first
        assert not (root / names[0]).exists() and not done
        fcntl.flock(fh, fcntl.LOCK_UN)
    worker.join(60)
    first, second = done[0]
    np.testing.assert_array_equal(first.items, build_table(loaded, *specs[0]).items)
    np.testing.assert_array_equal(second.items, build_table(loaded, *specs[1]).items)
