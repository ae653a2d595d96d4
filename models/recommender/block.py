"""Ranked candidates of many customers as fixed-width 2-D arrays (one row per customer).

The batch path of next-best-offers never builds a long frame of (customer, item) rows:
each source's top-``n`` lists (``(m, n)`` item positions) are laid side by side, merged
and de-duplicated per row with one integer sort along the rows, blended, and sorted by
score within each row. Business rules (:mod:`serving.rules`) then read the arrays
directly; strings (customer and item ids, reason texts) are only looked up for the items
that are finally returned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Reason texts of the sources with a fixed reason (others: see ``reason_table``).
FIXED_REASONS = ("for_you", "bought_before", "viewed", "popular_in:all")
SOURCE_REASON = {
    "als": 0,
    "ease": 0,
    "buy_again": 1,
    "recently_viewed": 2,
    "popular": 3,
}
#: Reason code of an entry whose reason is worked out on demand (:meth:`CandidateBlock.reasons`).
DEFERRED = -2


@dataclass(frozen=True)
class CandidateBlock:
    """Ranked candidates: row ``r`` holds customer ``customer_ids[r]``'s items, best first.

    Attributes
    ----------
    customer_ids : ndarray of object, shape (m,)
    items : ndarray of int32, shape (m, k)
        Item positions in ``item_index``; ``-1`` pads the end of short rows.
    score : ndarray of float64, shape (m, k)
        Final score (higher is better), ``-inf`` on pads. Within a row: descending
        score, ties by the lower item position.
    source : ndarray of int8, shape (m, k)
        Index into ``sources`` of the source that ranked the item best, ``-1`` on pads.
    reason : ndarray of int32, shape (m, k)
        Index into ``reason_labels`` (``for_you``, ``bought_before``, ``viewed``,
        ``popular_in:<segment>``, ``similar_to:<item_id>``), ``-1`` on pads,
        :data:`DEFERRED` where the reason costs a look-up (item-kNN explanations): read
        reasons through :meth:`reasons`, which works those out for the entries asked.
    item_index : pd.Index
        Item ids by position.
    sources : tuple of str
    reason_labels : ndarray of object
    positions : ndarray of int64, shape (m,)
        The model's row position of each customer.
    explain : callable, optional
        ``explain(positions, items) -> codes`` for :data:`DEFERRED` entries.
    """

    customer_ids: np.ndarray
    items: np.ndarray
    score: np.ndarray
    source: np.ndarray
    reason: np.ndarray
    item_index: pd.Index
    sources: tuple[str, ...]
    reason_labels: np.ndarray
    positions: np.ndarray
    explain: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.customer_ids)

    def reasons(self, rows: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Reason codes (into ``reason_labels``) of the entries ``(rows[t], slots[t])``."""
        codes = self.reason[rows, slots].astype(np.int64)
        todo = np.flatnonzero(codes == DEFERRED)
        if len(todo) and self.explain is not None:
            r, k = rows[todo], slots[todo]
            codes[todo] = self.explain(self.positions[r], self.items[r, k].astype(np.int64))
        return codes

    def to_frame(self) -> pd.DataFrame:
        """Long frame ``customer_id, item_id, score, source, reason`` (rows by customer, rank)."""
        r, k = np.nonzero(self.items >= 0)
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids[r],
                "item_id": self.item_index.to_numpy(dtype=object)[self.items[r, k]],
                "score": self.score[r, k],
                "source": np.asarray(self.sources, dtype=object)[self.source[r, k]],
                "reason": self.reason_labels[self.reasons(r, k)],
            }
        )


def reason_table(category_names: Sequence[str], item_ids: pd.Index) -> np.ndarray:
    """Every reason text a candidate can carry, by code.

    Codes ``0..3``: :data:`FIXED_REASONS`; ``4 + c``: ``popular_in:<category c>``;
    ``4 + n_categories + i``: ``similar_to:<item i>``.
    """
    cats = [f"popular_in:{name}" for name in category_names]
    items = ("similar_to:" + item_ids.astype(str)).to_numpy(dtype=object)
    return np.concatenate([np.asarray(FIXED_REASONS + tuple(cats), dtype=object), items])


@dataclass(frozen=True)
class MergedLists:
    """Per-row union of several sources' top-``n`` lists.

    Attributes
    ----------
    items : ndarray of int64, shape (m, k)
        Distinct item positions of the row in ascending order, ``-1`` padded at the end.
    ranks : ndarray of float32, shape (m, k, n_sources)
        1-based rank of the item in each source's list, ``absent_rank`` where absent.
    scores : ndarray of float32, shape (m, k, n_sources) or None
        Each source's score, NaN where absent (only when asked for).
    """

    items: np.ndarray
    ranks: np.ndarray
    scores: np.ndarray | None


def merge_lists(
    ids: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    absent_rank: float,
    with_scores: bool = False,
) -> MergedLists:
    """Merge the sources' top-``n`` lists of the same rows and de-duplicate per row.

    Parameters
    ----------
    ids : sequence of ndarray of int, each shape (m, n)
        Item positions per source, best first, ``-1`` where a list is shorter.
    scores : sequence of ndarray of float32, each shape (m, n)
        The sources' scores, aligned with ``ids``.
    absent_rank : float
        Rank recorded for a source that did not propose the item.
    with_scores : bool
        Also return the per-source scores (the re-ranker's features need them).

    Returns
    -------
    MergedLists
    """
    m = ids[0].shape[0] if ids else 0
    n_src = len(ids)
    widths = [a.shape[1] for a in ids]
    flat = np.hstack([np.asarray(a, dtype=np.int64) for a in ids]) if ids else np.empty((m, 0))
    src = np.repeat(np.arange(n_src), widths)
    rank = np.concatenate([np.arange(1, w + 1) for w in widths]) if ids else np.empty(0)
    big = np.iinfo(np.int64).max
    key = np.where(flat >= 0, flat, big)
    order = np.argsort(key, axis=1, kind="stable")
    sk = np.take_along_axis(key, order, 1)
    valid = sk != big
    first = valid.copy()
    first[:, 1:] &= sk[:, 1:] != sk[:, :-1]
    slot = np.cumsum(first, axis=1)
    slot -= 1
    k = int(slot[:, -1].max()) + 1 if slot.size else 0
    k = max(k, 0)
    # flat cell of every sorted entry in the (m, k) result
    cell = slot + (np.arange(m, dtype=np.int64) * k)[:, None]
    items = np.full((m, k), -1, dtype=np.int64)
    items.ravel()[cell[first]] = sk[first]
    at = order[valid]
    src_at = src[at]
    cell3 = cell[valid] * n_src + src_at
    ranks = np.full((m, k, n_src), absent_rank, dtype=np.float32)
    ranks.ravel()[cell3] = rank[at]
    per_source = None
    if with_scores:
        vals = np.hstack([np.asarray(a, dtype=np.float32) for a in scores])
        per_source = np.full((m, k, n_src), np.nan, dtype=np.float32)
        per_source.ravel()[cell3] = np.take_along_axis(vals, order, 1)[valid]
    return MergedLists(items, ranks, per_source)


def sort_rows(score: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Sort every row by descending ``score`` (stable: ties keep their column order).

    ``-inf`` entries go last. Returns ``score`` and ``arrays`` reordered, trimmed to the
    widest row's count of finite scores.
    """
    order = np.argsort(-score, axis=1, kind="stable")
    out = [np.take_along_axis(a, order, 1) for a in (score, *arrays)]
    width = int(np.isfinite(out[0]).sum(axis=1).max()) if out[0].size else 0
    return tuple(a[:, :width] for a in out)


__all__ = [
    "CandidateBlock",
    "DEFERRED",
    "FIXED_REASONS",
    "MergedLists",
    "SOURCE_REASON",
    "merge_lists",
    "reason_table",
    "sort_rows",
]
