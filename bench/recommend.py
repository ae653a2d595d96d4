"""Batch next-best-offers with rules: 1M customers x 50k items, top-10 (ARCHITECTURE §7).

Design: no full-catalogue scoring. Each customer's candidates are the item-kNN neighbours
of their last viewed/bought items, those items themselves (recently viewed) and the top of
their category (popular in segment): ~125 per customer instead of 50,000. Candidates are
scored by the blend of kNN similarity, recency and ALS ``user·item``, then the rules run
vectorised on the (customers x candidates) arrays: inactive items, durables already
bought, items sent in the last days, at most M items per category; then top-10. All in
numpy, 20k customers per chunk.

The demo shop has a few hundred items, so the bench uses *synthetic* interactions,
neighbours and factors of the right shapes (the cost does not depend on their values).
The baseline measured in the same run is full-catalogue ALS scoring with exclusion (dense
``U V^T`` + top-10) on a sample of customers, extrapolated to all of them.

Usage: ``nice .venv/bin/python -m bench.recommend [--customers 1000000 --items 50000]``
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from models.recommender.base import top_n

log = logging.getLogger(__name__)


def synthetic(n_users: int, n_items: int, seed: int = 42, factors: int = 32, n_cats: int = 40):
    """Synthetic shop state with the shapes of a fitted NextBestOffers (values random)."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, n_cats, n_items).astype(np.int16)
    by_cat = [np.flatnonzero(cat == k) for k in range(n_cats)]
    # 20 neighbours per item, 80% from its own category
    nbrs = rng.integers(0, n_items, (n_items, 20)).astype(np.int32)
    same = rng.random((n_items, 20)) < 0.8
    for k in range(n_cats):
        rows = np.flatnonzero(cat == k)
        pick = by_cat[k][rng.integers(0, len(by_cat[k]), (len(rows), 20))]
        nbrs[rows] = np.where(same[rows], pick, nbrs[rows])
    sims = np.sort(rng.random((n_items, 20), dtype=np.float32), axis=1)[:, ::-1].copy()
    pop_rank = rng.permutation(n_items)
    seg_top = np.stack([by_cat[k][np.argsort(pop_rank[by_cat[k]])[:20]] for k in range(n_cats)])
    return {
        "cat": cat,
        "active": rng.random(n_items) > 0.05,
        "durable": rng.random(n_items) < 0.3,
        "nbrs": nbrs,
        "sims": sims,
        "seg_top": seg_top.astype(np.int32),
        "hist": rng.integers(0, n_items, (n_users, 5)).astype(np.int32),  # newest first
        "user_cat": rng.integers(0, n_cats, n_users).astype(np.int16),
        "sent": rng.integers(0, n_items, (n_users, 4)).astype(np.int32),  # sent in last N days
        "uf": rng.standard_normal((n_users, factors), dtype=np.float32) * 0.1,
        "vf": rng.standard_normal((n_items, factors), dtype=np.float32) * 0.1,
    }


def recommend_chunk(s: dict, users: slice, k: int = 10, max_per_cat: int = 3) -> np.ndarray:
    """Top-``k`` item ids with rules for customers ``users``; shape (n, k), -1 padded."""
    hist = s["hist"][users]
    n = hist.shape[0]
    recency = np.float32(0.5) ** np.arange(hist.shape[1], dtype=np.float32)  # newest first
    knn_ids = s["nbrs"][hist].reshape(n, -1)
    knn_sc = (s["sims"][hist] * recency[None, :, None]).reshape(n, -1)
    seg = s["seg_top"][s["user_cat"][users]]
    cand = np.concatenate([knn_ids, hist, seg], axis=1)
    base = np.concatenate(
        [knn_sc, np.broadcast_to(0.5 * recency, hist.shape), np.full(seg.shape, 0.05, np.float32)],
        axis=1,
    )
    # dedupe per row: keep the best base score of each item
    order = np.lexsort((-base, cand), axis=1)
    cand = np.take_along_axis(cand, order, 1)
    base = np.take_along_axis(base, order, 1)
    dup = np.zeros(cand.shape, dtype=bool)
    dup[:, 1:] = cand[:, 1:] == cand[:, :-1]
    # ALS affinity of every candidate
    als = np.einsum("uf,ucf->uc", s["uf"][users], s["vf"][cand])
    score = base + als
    # rules: duplicates, inactive items, durables already bought, recently sent
    bad = dup | ~s["active"][cand]
    bought_durable = np.where(s["durable"][hist], hist, -1)
    bad |= (cand[:, :, None] == bought_durable[:, None, :]).any(axis=2)
    bad |= (cand[:, :, None] == s["sent"][users][:, None, :]).any(axis=2)
    score[bad] = -np.inf
    # sort by score, then at most max_per_cat per category
    order = np.argsort(-score, axis=1, kind="stable")
    cand = np.take_along_axis(cand, order, 1)
    score = np.take_along_axis(score, order, 1)
    width = cand.shape[1]
    key = s["cat"][cand].astype(np.int64) * width + np.arange(width)
    key.sort(axis=1)
    cat_sorted, pos = key // width, key % width
    start = np.zeros(key.shape, dtype=np.int64)
    start[:, 1:] = np.where(cat_sorted[:, 1:] != cat_sorted[:, :-1], np.arange(1, width), 0)
    np.maximum.accumulate(start, axis=1, out=start)
    rank_in_cat = np.empty_like(start)
    np.put_along_axis(rank_in_cat, pos, np.arange(width) - start, 1)
    valid = np.isfinite(score) & (rank_in_cat < max_per_cat)
    first = np.argsort(~valid, axis=1, kind="stable")[:, :k]
    out = np.take_along_axis(cand, first, 1)
    out[~np.take_along_axis(valid, first, 1)] = -1
    return out


def dense_baseline(s: dict, n_sample: int, k: int = 10) -> float:
    """Seconds per customer of full-catalogue ALS scoring + exclusion + top-k."""
    t0 = time.perf_counter()
    for start in range(0, n_sample, 500):
        u = slice(start, min(start + 500, n_sample))
        sc = s["uf"][u] @ s["vf"].T
        rows = np.arange(sc.shape[0])[:, None]
        sc[rows, s["hist"][u]] = -np.inf
        sc[rows, s["sent"][u]] = -np.inf
        sc[:, ~s["active"]] = -np.inf
        top_n(sc, k)
    return (time.perf_counter() - t0) / n_sample


def main(argv: list[str] | None = None) -> dict:
    """Run the bench; print and return the figures."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=50_000)
    ap.add_argument("--chunk", type=int, default=20_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline-sample", type=int, default=5_000)
    ap.add_argument("--out", type=Path, default=Path("var/bench/recommend-top10.npy"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.perf_counter()
    s = synthetic(args.customers, args.items)
    setup = time.perf_counter() - t0
    with threadpool_limits(1, "blas"):
        t0, c0 = time.perf_counter(), time.process_time()
        out = np.empty((args.customers, 10), dtype=np.int32)

        def work(start: int) -> None:
            u = slice(start, min(start + args.chunk, args.customers))
            out[u] = recommend_chunk(s, u)

        # numpy releases the GIL in sorts, gathers and einsum: one thread per core
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(work, range(0, args.customers, args.chunk)))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp.npy")
        np.save(tmp, out, allow_pickle=False)
        tmp.replace(args.out)
        secs = time.perf_counter() - t0
        cpu = time.process_time() - c0
        per_cust_dense = dense_baseline(s, args.baseline_sample)
    # rule checks on the output (a sample): nothing inactive, no sent item, <= 3 per category
    sample = out[:10_000]
    ok = sample >= 0
    assert s["active"][sample[ok]].all()
    assert not (sample[:, :, None] == s["sent"][:10_000][:, None, :]).any()
    cats = np.where(ok, s["cat"][np.maximum(sample, 0)], -1)
    per_cat = max((cats == k).sum(axis=1).max() for k in range(40))
    res = {
        "customers": args.customers,
        "items": args.items,
        "setup_s": round(setup, 1),
        "seconds": round(secs, 1),
        "cpu_seconds": round(cpu, 1),
        "customers_per_s": round(args.customers / secs),
        "catalogue_items_per_s": round(args.customers * args.items / secs),
        "filled_share": float(ok.mean()),
        "max_items_per_category": int(per_cat),
        "dense_als_baseline_seconds_extrapolated": round(per_cust_dense * args.customers, 1),
        "speedup_vs_dense": round(per_cust_dense * args.customers / secs, 1),
        "target_seconds": 120,
    }
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
