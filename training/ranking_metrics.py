"""Top-k ranking metrics: recall, precision, NDCG at k, and catalogue coverage.

Recommendations are an int array ``(n_users, >= k)`` of item positions, best first, padded
with ``-1``; the truth is a ``csr_matrix`` ``(n_users, n_items)`` whose non-zeros are the
relevant items of each row (binary relevance). Averages run over users with at least one
relevant item; users without any are skipped, as is usual.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def _hits(recs: np.ndarray, truth: sparse.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    recs = np.asarray(recs)
    if recs.ndim != 2 or recs.shape[0] != truth.shape[0]:
        raise ValueError(
            f"recs must have shape (n_users, k) with n_users == truth rows ({truth.shape[0]}), "
            f"got {recs.shape}"
        )
    if not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    top = recs[:, :k]
    truth = sparse.csr_matrix(truth)
    n_rel = np.diff(truth.indptr)
    hits = np.zeros(top.shape, dtype=bool)
    rows = np.repeat(np.arange(top.shape[0]), top.shape[1])
    cols = top.ravel()
    ok = cols >= 0
    found = np.zeros(cols.size, dtype=bool)
    found[ok] = np.asarray(truth[rows[ok], cols[ok]]).ravel() != 0
    hits = found.reshape(top.shape)
    return hits, n_rel


def recall_at_k(recs: np.ndarray, truth: sparse.csr_matrix, k: int) -> float:
    """Mean over users of ``|top-k ∩ relevant| / |relevant|`` (users with ≥1 relevant item)."""
    hits, n_rel = _hits(recs, truth, k)
    users = n_rel > 0
    if not users.any():
        return float("nan")
    return float((hits.sum(axis=1)[users] / n_rel[users]).mean())


def precision_at_k(recs: np.ndarray, truth: sparse.csr_matrix, k: int) -> float:
    """Mean over users of ``|top-k ∩ relevant| / k`` (users with ≥1 relevant item)."""
    hits, n_rel = _hits(recs, truth, k)
    users = n_rel > 0
    if not users.any():
        return float("nan")
    return float((hits.sum(axis=1)[users] / k).mean())


def ndcg_at_k(recs: np.ndarray, truth: sparse.csr_matrix, k: int) -> float:
    """Mean binary NDCG@k: ``sum hits / log2(rank + 1)`` over the ideal ordering's value."""
    hits, n_rel = _hits(recs, truth, k)
    users = n_rel > 0
    if not users.any():
        return float("nan")
    discount = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discount).sum(axis=1)
    ideal_cum = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_cum[np.minimum(n_rel, k)]
    return float((dcg[users] / idcg[users]).mean())


def coverage(recs: np.ndarray, n_items: int, k: int | None = None) -> float:
    """Share of the catalogue (``n_items``) that appears in anyone's top-k."""
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    top = np.asarray(recs)[:, :k] if k else np.asarray(recs)
    return float(np.unique(top[top >= 0]).size / n_items)


def ranking_report(
    recs: np.ndarray, truth: sparse.csr_matrix, n_items: int, ks: tuple[int, ...] = (4, 10)
) -> dict[str, float]:
    """All metrics at every ``k`` as ``{"recall_at_10": ..., "coverage": ...}``.

    ``coverage`` is measured on the top ``max(ks)``.
    """
    out: dict[str, float] = {}
    for k in ks:
        out[f"recall_at_{k}"] = recall_at_k(recs, truth, k)
        out[f"precision_at_{k}"] = precision_at_k(recs, truth, k)
        out[f"ndcg_at_{k}"] = ndcg_at_k(recs, truth, k)
    out["coverage"] = coverage(recs, n_items, max(ks))
    return out
