"""Popularity baselines: most popular overall and most popular in the user's categories."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender, check_fit_input


class PopularityRecommender(Recommender):
    """Recommend the items most users interacted with (the same list for everyone).

    Parameters
    ----------
    weighted : bool, default False
        False: popularity is the number of distinct users with a non-zero entry.
        True: popularity is the sum of the confidences.

    Attributes
    ----------
    popularity_ : ndarray of float32, shape (n_items,)
    """

    kind = "popular"
    _arrays = ("popularity_",)
    _sparse_scores = True

    def __init__(self, weighted: bool = False):
        self.weighted = weighted

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Count each item's users (or confidence) in ``user_items``; return ``self``."""
        m = check_fit_input(user_items)
        col = m.sum(axis=0) if self.weighted else (m > 0).sum(axis=0)
        self.popularity_ = np.asarray(col, dtype=np.float32).ravel()
        self.n_items_ = int(m.shape[1])
        return self

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        # the same list for everyone: its first n + (most excluded items of a user) entries
        pop = np.asarray(self.popularity_, dtype=np.float32)
        top = _cached_order(self, "popularity_")[: _shortlist_width(n, exclude, self.n_items_)]
        m = len(user_ids)
        return sparse.csr_matrix(
            (np.tile(pop[top], m), np.tile(top, m), np.arange(m + 1) * len(top)),
            shape=(m, self.n_items_),
        )


class CategoryPopularityRecommender(Recommender):
    """Popular in the user's categories: cold start that still follows the user's interests.

    The score of item ``i`` for user ``u`` is ``affinity(u, c_i) * share(i | c_i) +
    eps * share(i)``, where ``affinity`` is the share of the user's current
    interactions (confidence-weighted) in category ``c_i``, ``share(i | c)`` the item's
    share of the users in its category, and the small ``eps`` term orders the rest of
    the catalogue by overall popularity (users without history get exactly that).

    Parameters
    ----------
    item_categories : sequence of int, shape (n_items,)
        Category code (0..n_categories-1) of every item position.
    eps : float, default 1e-3
        Weight of overall popularity.

    Attributes
    ----------
    in_category_ : ndarray of float32, shape (n_items,)
        ``share(i | c_i)``.
    overall_ : ndarray of float32, shape (n_items,)
        ``share(i)``.
    """

    kind = "popular_in_segment"
    _arrays = ("in_category_", "overall_", "categories_")
    _sparse_scores = True
    _fitted_scalars = ("n_items_", "n_categories_")

    def __init__(self, item_categories: list[int] | np.ndarray, eps: float = 1e-3):
        self.item_categories = item_categories
        self.eps = eps

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Compute overall and within-category item popularity; return ``self``."""
        m = check_fit_input(user_items)
        cats = np.asarray(self.item_categories, dtype=np.int64)
        if cats.shape != (m.shape[1],) or (cats.size and cats.min() < 0):
            raise ValueError(
                f"item_categories must hold one non-negative code per item ({m.shape[1]}), "
                f"got shape {cats.shape}"
            )
        users = np.asarray((m > 0).sum(axis=0), dtype=np.float64).ravel()
        self.n_categories_ = int(cats.max()) + 1 if cats.size else 0
        cat_total = np.bincount(cats, weights=users, minlength=self.n_categories_)
        self.in_category_ = (users / np.maximum(cat_total[cats], 1.0)).astype(np.float32)
        self.overall_ = (users / max(users.sum(), 1.0)).astype(np.float32)
        self.categories_ = cats.astype(np.int32)
        self.n_items_ = int(m.shape[1])
        return self

    def category_affinity(self, rows: sparse.csr_matrix) -> np.ndarray:
        """Share of each user's confidence per category, shape (n_rows, n_categories)."""
        onehot = sparse.csr_matrix(
            (
                np.ones(self.n_items_, dtype=np.float32),
                (np.arange(self.n_items_), self.categories_),
            ),
            shape=(self.n_items_, self.n_categories_),
        )
        per_cat = np.asarray((rows @ onehot).todense(), dtype=np.float32)
        total = per_cat.sum(axis=1, keepdims=True)
        return np.divide(per_cat, total, out=np.zeros_like(per_cat), where=total > 0)

    def top_category(self, rows: sparse.csr_matrix) -> np.ndarray:
        """Each user's strongest category code, ``-1`` for users without history."""
        aff = self.category_affinity(rows)
        best = aff.argmax(axis=1).astype(np.int32)
        best[aff.max(axis=1) <= 0] = -1
        return best

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        """Exact shortlist: the top ``w`` of each category the user has affinity with, plus
        the overall top ``w`` (``w = n`` + the most excluded items of a user).

        Within a category ``share(i | c)`` and ``share(i)`` are proportional, so the order
        by score inside a category does not depend on the affinity; an item of a category
        without affinity scores ``eps * share(i)``, so only the overall top ``w`` can
        beat the others.
        """
        aff = self.category_affinity(rows)
        cats = np.asarray(self.categories_, dtype=np.int64)
        in_cat = np.asarray(self.in_category_, dtype=np.float32)
        overall = np.asarray(self.overall_, dtype=np.float32)
        width = _shortlist_width(n, exclude, self.n_items_)
        by_cat = self._by_category(width)
        u, k = np.nonzero(aff > 0)
        items = by_cat[k]  # (pairs, width)
        u_cat = np.repeat(u, width)
        i_cat = items.ravel()
        top = _cached_order(self, "overall_")[:width]
        m = len(user_ids)
        u_top = np.repeat(np.arange(m), len(top))
        i_top = np.tile(top, m)
        # an overall-top item of a category the user has affinity with is already in that
        # category's list (items above it in its category are above it overall)
        fresh = aff[u_top, cats[i_top]] <= 0
        uu = np.r_[u_cat, u_top[fresh]]
        ii = np.r_[i_cat, i_top[fresh]]
        ok = ii >= 0
        uu, ii = uu[ok], ii[ok]
        score = aff[uu, cats[ii]] * in_cat[ii] + self.eps * overall[ii]
        return sparse.csr_matrix((score.astype(np.float32), (uu, ii)), shape=(m, self.n_items_))

    def _by_category(self, width: int) -> np.ndarray:
        """Row ``k``: category ``k``'s ``width`` best items, best first, ``-1`` padded.

        Depends only on the fitted arrays, so it is kept per width (cheap per request).
        """
        cache = self.__dict__.setdefault("_by_cat_cache", {})
        key = (id(self.in_category_), id(self.categories_), width)
        if key not in cache:
            cats = np.asarray(self.categories_, dtype=np.int64)
            in_cat = np.asarray(self.in_category_, dtype=np.float32)
            order = np.lexsort((np.arange(self.n_items_), -in_cat, cats))
            starts = np.searchsorted(cats[order], np.arange(self.n_categories_))
            rank = np.arange(self.n_items_) - starts[cats[order]]
            keep = rank < width
            by_cat = np.full((self.n_categories_, width), -1, dtype=np.int64)
            by_cat[cats[order][keep], rank[keep]] = order[keep]
            if len(cache) >= 8:  # widths vary only with exclusions
                cache.clear()
            cache[key] = (self.in_category_, self.categories_, by_cat)
        return cache[key][2]


def _cached_order(model: Recommender, attr: str) -> np.ndarray:
    """:func:`_order` of the fitted array ``attr``, computed once per array object."""
    arr = getattr(model, attr)
    cache = model.__dict__.setdefault("_order_cache", {})
    hit = cache.get(attr)
    if hit is None or hit[0] is not arr:
        hit = (arr, _order(np.asarray(arr, dtype=np.float32)))
        cache[attr] = hit
    return hit[1]


def _shortlist_width(n: int | None, exclude: sparse.csr_matrix | None, n_items: int) -> int:
    """Items per list that surely hold the top-``n`` after removing the excluded ones."""
    if n is None:
        return n_items
    most_excluded = int(exclude.getnnz(axis=1).max()) if exclude is not None and exclude.nnz else 0
    return min(n_items, n + most_excluded)


def _order(score: np.ndarray) -> np.ndarray:
    """Item positions by descending score, ties by the lower position (as ``top_n``)."""
    return np.lexsort((np.arange(len(score)), -score))
