"""Implicit-feedback ALS (Hu, Koren & Volinsky 2008) via ``implicit``, with fold-in."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Literal, Self

import numpy as np
from scipy import sparse
from threadpoolctl import threadpool_limits

from models.recommender.base import Recommender, check_fit_input, top_n

log = logging.getLogger(__name__)

_LIMIT_BLAS_USERS = 64  # users scored at once above which BLAS is held to one thread


def confidence(m: sparse.csr_matrix, alpha: float, scaling: str, eps: float) -> sparse.csr_matrix:
    """Map interaction strengths ``r`` to ALS confidences ``c = 1 + alpha * f(r)``.

    ``scaling="linear"``: ``f(r) = r``; ``scaling="log"``: ``f(r) = log(1 + r / eps)``.
    Zeros stay zeros (unobserved pairs have confidence 1 implicitly).
    """
    out = sparse.csr_matrix(m, dtype=np.float32, copy=True)
    r = out.data.astype(np.float64)
    f = r if scaling == "linear" else np.log1p(r / eps)
    out.data = (1.0 + alpha * f).astype(np.float32)
    return out


class ALSRecommender(Recommender):
    """Matrix factorisation for implicit feedback, scored as ``user_factor · item_factor``.

    Confidence scaling is a setting (:func:`confidence`). Users that had no interactions
    in the fitted matrix, or whose position lies beyond it, get their factors folded in
    from their current history (``implicit``'s ``recalculate_user``: one least-squares
    step against the fixed item factors) instead of falling back to popularity.

    Parameters
    ----------
    factors : int, default 64
    regularization : float, default 0.05
    alpha : float, default 10.0
        Confidence weight of an observed interaction.
    scaling : {"linear", "log"}, default "log"
    eps : float, default 1.0
        Scale of the log confidence.
    iterations : int, default 15
    random_state : int or None, default None
        Seed of the factor initialisation (``None`` means 0, so fits are repeatable).
    num_threads : int, default 0
        Threads of the ALS solver (0 = all cores); BLAS is limited to one thread.
    candidate_items : int or None, default None
        Propose only among this many most popular items (distinct users at fit time);
        None: the whole catalogue. Bounds batch cost on large catalogues (scoring is
        ``users x candidate_items``); a catalogue no larger than it is unaffected.

    Attributes
    ----------
    user_factors_ : ndarray of float32, shape (n_fit_users, factors)
    item_factors_ : ndarray of float32, shape (n_items, factors)
    trained_users_ : ndarray of bool, shape (n_fit_users,)
        True where the user had at least one interaction at fit time.
    pool_ : ndarray of int64, shape (n_pool,)
        Item positions ALS may propose (every item without ``candidate_items``).
    """

    kind = "als"
    _arrays = ("user_factors_", "item_factors_", "trained_users_", "pool_")
    _optional_arrays = ("pool_",)

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        scaling: Literal["linear", "log"] = "log",
        eps: float = 1.0,
        iterations: int = 15,
        random_state: int | None = None,
        num_threads: int = 0,
        candidate_items: int | None = None,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.scaling = scaling
        self.eps = eps
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.candidate_items = candidate_items

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        with threadpool_limits(1, "blas"):  # implicit checks the BLAS threads on creation
            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                random_state=0 if self.random_state is None else self.random_state,
                num_threads=self.num_threads,
            )

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Fit user and item factors by alternating least squares; return ``self``."""
        if self.scaling not in ("linear", "log"):
            raise ValueError(f"scaling must be 'linear' or 'log', got {self.scaling!r}")
        m = check_fit_input(user_items)
        model = self._model()
        with threadpool_limits(1, "blas"):
            model.fit(confidence(m, self.alpha, self.scaling, self.eps), show_progress=False)
        self.user_factors_ = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.trained_users_ = np.asarray(m.getnnz(axis=1) > 0)
        self.n_items_ = int(m.shape[1])
        self.pool_ = popular_pool(m, self.candidate_items)
        self._implicit = model
        return self

    def _after_load(self) -> None:
        self._implicit = None

    def user_vectors(self, user_ids: np.ndarray, rows: sparse.csr_matrix) -> np.ndarray:
        """Factors of ``user_ids``: fitted ones, folded in from ``rows`` where untrained.

        Parameters
        ----------
        user_ids : ndarray of int, shape (n,)
        rows : csr_matrix, shape (n, n_items)
            The users' current histories (same row order as ``user_ids``).

        Returns
        -------
        ndarray of float32, shape (n, factors)
        """
        n_fit = len(self.trained_users_)
        known = user_ids < n_fit
        trained = np.zeros(len(user_ids), dtype=bool)
        trained[known] = self.trained_users_[user_ids[known]]
        out = np.zeros((len(user_ids), self.item_factors_.shape[1]), dtype=np.float32)
        out[trained] = self.user_factors_[user_ids[trained]]
        fold = np.flatnonzero(~trained & (rows.getnnz(axis=1) > 0))
        if fold.size:
            out[fold] = self.fold_in(rows[fold])
        return out

    def fold_in(self, rows: sparse.csr_matrix) -> np.ndarray:
        """Solve user factors for ``rows`` against the fixed item factors (``recalculate_user``)."""
        if getattr(self, "_implicit", None) is None:
            model = self._model()
            # implicit's solver needs writable buffers; loaded factors may be memory-mapped
            # read-only, so it gets a private copy of the item factors (n_items x factors)
            model.user_factors = np.array(self.user_factors_[:1], dtype=np.float32)
            model.item_factors = np.array(self.item_factors_, dtype=np.float32)
            self._implicit = model
        conf = confidence(rows, self.alpha, self.scaling, self.eps)
        with threadpool_limits(1, "blas"):
            return np.asarray(
                self._implicit.recalculate_user(np.arange(rows.shape[0]), conf), dtype=np.float32
            )

    def _is_sparse(self) -> bool:
        pool = getattr(self, "pool_", None)
        return pool is not None and len(pool) < self.n_items_

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        """Top ``n`` of the candidate pool per user (exclusions applied inside the pool)."""
        ids, vals = self._top_pool(user_ids, rows, n, exclude)
        r, k = np.nonzero(ids >= 0)
        return sparse.csr_matrix((vals[r, k], (r, ids[r, k])), shape=(len(user_ids), self.n_items_))

    def _top_direct(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int,
        exclude: sparse.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if not self._is_sparse():
            return None
        return self._top_pool(user_ids, rows, n, exclude)

    def _top_pool(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None,
        exclude: sparse.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` pool items per user as ``(ids, scores)``, shape ``(len(user_ids), n)``."""
        pool = np.asarray(self.pool_)
        m = len(user_ids)
        k = len(pool) if n is None else min(n, len(pool))
        width = k if n is None else n
        col_of = np.full(self.n_items_, -1, dtype=np.int64)
        col_of[pool] = np.arange(len(pool))
        pool_t = np.ascontiguousarray(np.asarray(self.item_factors_)[pool].T)
        ids = np.full((m, width), -1, dtype=np.int32)
        out = np.full((m, width), -np.inf, dtype=np.float32)
        step = max(1, 4_000_000 // max(len(pool), 1))
        # a few users (a request) make a product BLAS runs on one thread anyway; setting
        # the limit costs more than the product there
        limit = threadpool_limits(1, "blas") if m > _LIMIT_BLAS_USERS else nullcontext()
        with limit:
            for s in range(0, m, step):
                uid = user_ids[s : s + step]
                vec = self.user_vectors(uid, rows[s : s + step])
                sc = vec @ pool_t
                sc[~vec.any(axis=1)] = -np.inf
                if exclude is not None:
                    ex = exclude[s : s + step].tocoo()
                    j = col_of[ex.col]
                    hit = (ex.data != 0) & (j >= 0)
                    sc[ex.row[hit], j[hit]] = -np.inf
                i, v = top_n(sc, k)
                ids[s : s + len(uid), :k] = np.where(i >= 0, pool[np.maximum(i, 0)], -1)
                out[s : s + len(uid), :k] = v
        return ids, out

    def _score_block(self, user_ids: np.ndarray, rows: sparse.csr_matrix) -> np.ndarray:
        if self._is_sparse():
            return super()._score_block(user_ids, rows)
        with threadpool_limits(1, "blas"):
            vec = self.user_vectors(user_ids, rows)
            scores = vec @ np.asarray(self.item_factors_).T
        scores[~vec.any(axis=1)] = -np.inf  # no factors and no history: propose nothing
        return scores


def popular_pool(m: sparse.csr_matrix, size: int | None) -> np.ndarray:
    """Positions of the ``size`` items with the most distinct users (all items if None)."""
    n_items = m.shape[1]
    if size is None or size >= n_items:
        return np.arange(n_items, dtype=np.int64)
    if size < 1:
        raise ValueError(f"candidate_items must be >= 1 or None, got {size}")
    users = np.asarray((m > 0).sum(axis=0)).ravel()
    order = np.lexsort((np.arange(n_items), -users))
    return np.sort(order[:size]).astype(np.int64)
