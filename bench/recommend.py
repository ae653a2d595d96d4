"""Batch next-best-offers with rules: 1M customers x 50k items, top-10 (ARCHITECTURE §7).

What is timed is the production path, unchanged: for each chunk of customers
:func:`serving.next_best_offer.recommend_frame` asks a fitted
:class:`models.recommender.next_best.NextBestOffers` for its ranked candidates as 2-D
arrays (``candidate_block``: its real sources ALS, item-kNN, buy again, recently viewed,
popular, popular in segment, merged per customer row and blended), and runs the real
:func:`serving.rules.apply_rules` (consent, purchased durables and consumables, items sent
in the last 7 days, inactive items, at most 3 per category, popular fallback), giving the
top-10 per customer as the result frames the export writes.

The interactions are SYNTHETIC (the demo shop has a few hundred items): each customer
has a handful of events concentrated in one or two categories, item popularity is
Zipf-like; the fitted state of the sources (ALS factors, item-kNN neighbour matrix,
repurchase cycles) is generated with the shapes a fit would give, because fitting ALS on
1M x 50k takes ~5 min here (STACK.md) and its values do not change the cost. The rule
context (customers with consent, items, purchase summary, sends, popularity) is built
from synthetic frames by the real :class:`serving.context.RecContext`.

Baseline in the same run: full-catalogue ALS scoring (dense ``U V^T`` over all 50k items,
history excluded, top-10, no other rule) on a sample of customers, scaled to all of them.

Usage: ``nice .venv/bin/python -m bench.recommend [--customers 1000000 --items 50000]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
from scipy import sparse
from threadpoolctl import threadpool_limits

from features import contract as c
from models.recommender import (
    ALSRecommender,
    BuyAgainRecommender,
    CategoryPopularityRecommender,
    ItemKNNRecommender,
    PopularityRecommender,
    RecentlyViewedRecommender,
)
from models.recommender.als import popular_pool
from models.recommender.base import top_n
from models.recommender.interactions import IdMap
from models.recommender.next_best import NextBestOffers
from models.recommender.ranker import CandidateRanker
from serving.context import CYCLE_DAYS, LAST_TS, N_GAPS, N_PURCHASES, OWN_CYCLE_DAYS, RecContext
from serving.next_best_offer import recommend_frame
from serving.placements import Placement, Rules
from serving.rules import apply_rules, eligibility

log = logging.getLogger(__name__)

SOURCES = ["als", "item_knn", "buy_again", "recently_viewed", "popular", "popular_in_segment"]
DAY = np.timedelta64(1, "D")
NOW = np.datetime64("2026-11-01T00:00:00")


def placement(n_items: int = 10) -> Placement:
    """The benchmarked placement: an email top-10 with the newsletter's rules, 3 per category."""
    return Placement(
        name="bench_top10",
        channel="email",
        n_items=n_items,
        candidate_sources=SOURCES,  # type: ignore[arg-type]
        n_per_source=20,
        max_candidates=80,
        rules=Rules(exclude_sent_days=7, max_per_category=3),
    )


def synthetic(
    n_users: int,
    n_items: int,
    seed: int = 42,
    n_cats: int = 40,
    factors: int = 32,
    candidate_items: int | None = 5_000,
):
    """A fitted NextBestOffers and a RecContext on synthetic interactions (see module doc)."""
    rng = np.random.default_rng(seed)
    users = pd.Index([f"C{u:07d}" for u in range(n_users)])
    items = pd.Index([f"I{i:06d}" for i in range(n_items)])
    cat = rng.integers(0, n_cats, n_items)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop = pop[rng.permutation(n_items)]
    by_cat = [np.flatnonzero(cat == k) for k in range(n_cats)]
    cdf = [np.cumsum(pop[m]) / pop[m].sum() for m in by_cat]
    # events: 8 per customer, 75% in the customer's favourite category
    per = 8
    fav = rng.integers(0, n_cats, n_users)
    ucat = np.where(
        rng.random((n_users, per)) < 0.75, fav[:, None], rng.integers(0, n_cats, (n_users, per))
    )
    it = np.empty((n_users, per), dtype=np.int64)
    for k in range(n_cats):
        hit = ucat == k
        it[hit] = by_cat[k][np.searchsorted(cdf[k], rng.random(hit.sum()))]
    etype = rng.choice([1.0, 3.0, 5.0], (n_users, per), p=[0.6, 0.2, 0.2])  # view, cart, buy
    age = rng.exponential(40.0, (n_users, per)).astype(np.float32) + 0.5  # days before NOW
    row = np.repeat(np.arange(n_users), per)
    shape = (n_users + 1, n_items)  # + the empty row of unknown customers
    hist = sparse.csr_matrix((etype.ravel().astype(np.float32), (row, it.ravel())), shape=shape)
    last_age = sparse.csr_matrix((-age.ravel(), (row, it.ravel())), shape=shape)
    last_age.sum_duplicates()
    recency = last_age.copy()
    recency.data = (0.5 ** (np.abs(recency.data) / 14.0)).astype(np.float32)
    bought = etype.ravel() == 5.0
    purchase_age = sparse.csr_matrix(
        (1.0 + age.ravel()[bought], (row[bought], it.ravel()[bought])), shape=shape
    )

    nbo = NextBestOffers({"product_view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}, SOURCES)
    nbo.ids_ = IdMap(users, items)
    nbo.as_of_ = str(pd.Timestamp(NOW))
    nbo.history_, nbo.recency_, nbo.purchase_age_ = hist, recency, purchase_age
    nbo.categories_ = cat.astype(np.int32)
    nbo.category_names_ = [f"cat{k:02d}" for k in range(n_cats)]
    nbo.price_ = rng.gamma(2.0, 15.0, n_items).astype(np.float32)
    repurchasable = rng.random(n_items) < 0.4
    nbo.repurchasable_ = repurchasable
    nbo.item_log_pop_ = np.log1p(np.asarray((hist > 0).sum(axis=0)).ravel()).astype(np.float32)

    als = ALSRecommender(factors=factors, candidate_items=candidate_items)
    als.user_factors_ = rng.standard_normal((n_users, factors), dtype=np.float32) * 0.1
    als.item_factors_ = rng.standard_normal((n_items, factors), dtype=np.float32) * 0.1
    als.trained_users_ = np.ones(n_users, dtype=bool)
    als.n_items_ = n_items
    als._implicit = None
    als.pool_ = popular_pool(hist, candidate_items)
    knn = ItemKNNRecommender(K=20)
    nb = np.where(
        rng.random((n_items, 20)) < 0.8,
        np.stack(
            [by_cat[cat[i]][rng.integers(0, len(by_cat[cat[i]]), 20)] for i in range(n_items)]
        ),
        rng.integers(0, n_items, (n_items, 20)),
    )
    sim = sparse.csr_matrix(
        (
            rng.random(n_items * 20, dtype=np.float32),
            (np.repeat(np.arange(n_items), 20), nb.ravel()),
        ),
        shape=(n_items, n_items),
    )
    sim.setdiag(0)
    sim.eliminate_zeros()
    sim.sort_indices()
    knn.similarity_, knn.n_items_, knn._sim_keys = sim, n_items, None
    cycles = np.where(repurchasable, rng.uniform(14, 60, n_items), np.nan)
    nbo.models_ = {
        "als": als,
        "item_knn": knn,
        "buy_again": BuyAgainRecommender().fit(
            hist, item_cycle_days=cycles, repurchasable=repurchasable
        ),
        "recently_viewed": RecentlyViewedRecommender().fit(hist),
        "popular": PopularityRecommender().fit(hist),
        "popular_in_segment": CategoryPopularityRecommender(nbo.categories_).fit(hist),
    }
    nbo.ranker_ = CandidateRanker("blend")

    # rule context from synthetic contract-shaped frames
    durable = ~repurchasable & (rng.random(n_items) < 0.6)
    item_frame = pd.DataFrame(
        {
            c.ITEM_ID: items,
            c.TITLE: [f"Item {i}" for i in range(n_items)],
            c.CATEGORY: np.asarray(nbo.category_names_)[cat],
            c.PRICE: nbo.price_.astype(float),
            c.URL: [f"https://shop.example.com/p/{i}" for i in items],
            c.IMAGE_URL: [f"https://cdn.example.com/{i}.jpg" for i in items],
            c.ACTIVE: rng.random(n_items) > 0.05,
            c.REPURCHASABLE: repurchasable,
            c.DURABLE: durable,
            CYCLE_DAYS: cycles,
        }
    )
    coo = purchase_age.tocoo()
    purchases = pd.DataFrame(
        {
            c.CUSTOMER_ID: users.to_numpy()[coo.row],
            c.ITEM_ID: items.to_numpy()[coo.col],
            LAST_TS: NOW - (coo.data.astype(np.float64) * 86400).astype("timedelta64[s]"),
            N_PURCHASES: 1,
            N_GAPS: 0,
            OWN_CYCLE_DAYS: np.nan,
        }
    )
    # 4 item sends per customer in the last 10 days, from their favourite category
    n_sent = 4
    sent_items = np.concatenate([by_cat[k][:50] for k in range(n_cats)]).reshape(n_cats, -1)
    sent = sent_items[
        np.repeat(fav, n_sent), rng.integers(0, sent_items.shape[1], n_users * n_sent)
    ]
    sends = pd.DataFrame(
        {
            c.CUSTOMER_ID: np.repeat(users.to_numpy(), n_sent),
            c.ITEM_ID: items.to_numpy()[sent],
            c.PLACEMENT: "newsletter",
            LAST_TS: NOW - (rng.uniform(0, 10, n_users * n_sent) * 86400).astype("timedelta64[s]"),
        }
    )
    customers = pd.DataFrame(
        {c.CUSTOMER_ID: users, c.CONSENT_EMAIL: rng.random(n_users) < 0.8, c.CONSENT_ADS: False}
    )
    affinity = pd.DataFrame(
        {c.CUSTOMER_ID: users, c.CATEGORY: np.asarray(nbo.category_names_)[fav], "weight": 1.0}
    )
    popularity = pd.DataFrame({c.ITEM_ID: items, "popularity": np.round(pop * 1e4)})
    t0 = time.perf_counter()
    ctx = RecContext(
        now=pd.Timestamp(NOW).to_pydatetime(),
        customers=customers,
        items=item_frame,
        purchases=purchases,
        sends=sends,
        carts=pd.DataFrame({c.CUSTOMER_ID: [], c.ITEM_ID: [], c.TS: []}),
        affinity=affinity,
        popularity=popularity,
    )
    return nbo, ctx, time.perf_counter() - t0


# state shared with forked workers (copy-on-write)
_STATE: dict = {}


def _run_chunk(bounds: tuple[int, int]) -> tuple[int, int, int, int, float]:
    nbo, ctx, pl = _STATE["nbo"], _STATE["ctx"], _STATE["placement"]
    start, end = bounds
    ids = nbo.ids_.users[start:end]
    t0 = time.process_time()
    with threadpool_limits(1):
        res = recommend_frame(ids, pl, context=ctx, model=nbo)
    rec, items = res.recipients, res.recs
    return (
        int(rec["eligible"].sum()),
        len(items),
        int(items[c.CATEGORY].groupby(items[c.CUSTOMER_ID]).value_counts().max()),
        int((items["reason"].str.startswith("popular_in")).sum()),
        time.process_time() - t0,
    )


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def breakdown(nbo: NextBestOffers, ctx: RecContext, pl: Placement, n: int) -> dict[str, float]:
    """CPU seconds of one chunk's steps (after the timed run; not part of its figure).

    The same calls ``recommend_frame`` makes: eligibility, ``candidate_block`` (sources,
    merge, blend, sort), ``apply_rules`` (rules, fallback, output frames).
    """
    ids = nbo.ids_.users[:n]
    with threadpool_limits(1):
        t0 = time.process_time()
        ok, _ = eligibility(ctx.customer_codes(ids), pl, ctx)
        block = nbo.candidate_block(
            ids[ok], n_per_source=pl.n_per_source, sources=pl.candidate_sources
        )
        t1 = time.process_time()
        apply_rules(block, ids, pl, ctx)
        t2 = time.process_time()
    return {"customers": n, "candidates": round(t1 - t0, 2), "rules": round(t2 - t1, 2)}


def dense_als_baseline(nbo: NextBestOffers, n_sample: int, k: int = 10) -> float:
    """Seconds per customer of full-catalogue ALS scoring with the history excluded, top-k."""
    als = nbo.models_["als"]
    uf, vf = als.user_factors_, als.item_factors_  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    with threadpool_limits(1, "blas"):
        for start in range(0, n_sample, 500):
            u = np.arange(start, min(start + 500, n_sample))
            sc = uf[u] @ vf.T
            h = nbo.history_[u].tocoo()
            sc[h.row, h.col] = -np.inf
            top_n(sc, k)
    return (time.perf_counter() - t0) / n_sample


def main(argv: list[str] | None = None) -> dict:
    """Run the bench; print and return the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--chunk", type=int, default=25_000)
    ap.add_argument("--workers", type=int, default=2, help="forked worker processes")
    ap.add_argument("--baseline-sample", type=int, default=4_000)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    t0 = time.perf_counter()
    nbo, ctx, ctx_s = synthetic(args.customers, args.items)
    setup = time.perf_counter() - t0
    _STATE.update(nbo=nbo, ctx=ctx, placement=placement())
    bounds = [
        (s, min(s + args.chunk, args.customers)) for s in range(0, args.customers, args.chunk)
    ]
    load_before = os.getloadavg()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    if args.workers > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(args.workers, mp_context=mp.get_context("fork")) as pool:
            parts = list(pool.map(_run_chunk, bounds))
    else:
        parts = [_run_chunk(b) for b in bounds]
    secs = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    load_after = os.getloadavg()
    split = breakdown(nbo, ctx, _STATE["placement"], min(args.chunk, args.customers))
    eligible = sum(p[0] for p in parts)
    n_rec = sum(p[1] for p in parts)
    per_dense = dense_als_baseline(nbo, args.baseline_sample)
    res = {
        "data": "synthetic interactions (8 events/customer, Zipf item popularity, 40 categories)",
        "customers": args.customers,
        "items": args.items,
        "setup_s": round(setup, 1),
        "rule_context_build_s": round(ctx_s, 1),
        "seconds": round(secs, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_seconds_workers": round(sum(p[4] for p in parts), 1),
        "chunk_cpu_breakdown_s": split,
        "customers_per_s": round(args.customers / secs),
        "items_per_s": round(n_rec / secs),
        "catalogue_items_per_s": round(args.customers * args.items / secs),
        "eligible_customers": eligible,
        "items_returned": n_rec,
        "fallback_items": sum(p[3] for p in parts),
        "max_items_per_category": max(p[2] for p in parts),
        "baseline_dense_als_s_scaled": round(per_dense * args.customers, 1),
        "speedup_vs_baseline": round(per_dense * args.customers / secs, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "cores": os.cpu_count(),
        "target_seconds": 120,
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
