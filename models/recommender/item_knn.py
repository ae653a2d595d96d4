"""Item-to-item nearest neighbours ("similar to what you viewed/bought") via ``implicit``."""

from __future__ import annotations

import warnings
from typing import Literal, Self

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender, check_fit_input


class ItemKNNRecommender(Recommender):
    """Score items by their similarity to the user's current history.

    ``score(u, i) = sum_j x_uj * S[j, i]`` over the ``K`` nearest neighbours ``S`` of
    each item, computed by ``implicit.nearest_neighbours`` (cosine, TF-IDF or BM25
    weighting). Items with no similarity to the history are not proposed.

    Parameters
    ----------
    similarity : {"cosine", "tfidf", "bm25"}, default "cosine"
    K : int, default 50
        Neighbours kept per item.
    binary_history : bool, default False
        Score with ``x > 0`` instead of confidences.

    Attributes
    ----------
    similarity_ : csr_matrix of float32, shape (n_items, n_items)
        Row ``j`` holds the neighbours of item ``j``.
    """

    kind = "item_knn"
    _sparse_scores = True
    _arrays = ("similarity_",)

    def __init__(
        self,
        similarity: Literal["cosine", "tfidf", "bm25"] = "cosine",
        K: int = 50,
        binary_history: bool = False,
    ):
        self.similarity = similarity
        self.K = K
        self.binary_history = binary_history

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Compute the item-item neighbour matrix; return ``self``."""
        from implicit import nearest_neighbours as nn

        classes = {
            "cosine": nn.CosineRecommender,
            "tfidf": nn.TFIDFRecommender,
            "bm25": nn.BM25Recommender,
        }
        if self.similarity not in classes:
            raise ValueError(
                f"similarity must be one of {sorted(classes)}, got {self.similarity!r}"
            )
        if self.K < 1:
            raise ValueError(f"K must be >= 1, got {self.K}")
        m = check_fit_input(user_items)
        model = classes[self.similarity](K=self.K, num_threads=1)
        with warnings.catch_warnings():  # implicit converts its own intermediate COO to CSR
            warnings.simplefilter("ignore")
            model.fit(m, show_progress=False)
        sim = sparse.csr_matrix(model.similarity, dtype=np.float32)
        sim.setdiag(0)
        sim.eliminate_zeros()
        sim.sort_indices()
        self.similarity_ = sim
        self.n_items_ = int(m.shape[1])
        self._sim_keys: np.ndarray | None = None
        return self

    def _history(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        return (rows > 0).astype(np.float32) if self.binary_history else rows

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        s = sparse.csr_matrix(self._history(rows) @ self.similarity_, dtype=np.float32)
        s.data[~(s.data > 0)] = 0.0
        s.eliminate_zeros()
        return s

    def explain(
        self, user_ids: np.ndarray, user_items: sparse.csr_matrix, item_ids: np.ndarray
    ) -> np.ndarray:
        """The history item that contributes most to each (user, item) score.

        Parameters
        ----------
        user_ids, item_ids : ndarray of int, shape (n,)
            Pairs to explain.
        user_items : csr_matrix
            Current histories, one row per user position.

        Returns
        -------
        ndarray of int32, shape (n,)
            Item position of the strongest neighbour in the history, ``-1`` if none.
        """
        hist = self._history(sparse.csr_matrix(user_items))
        hist.sort_indices()
        users = np.asarray(user_ids, dtype=np.int64)
        items = np.asarray(item_ids, dtype=np.int64)
        out = np.full(len(users), -1, dtype=np.int32)
        pairs = np.flatnonzero(items >= 0)
        # one row per (pair, history item j of the pair's user)
        lens = np.diff(hist.indptr)[users[pairs]]
        pair = np.repeat(pairs, lens)
        first = np.repeat(hist.indptr[users[pairs]] - (np.cumsum(lens) - lens), lens)
        at = first + np.arange(len(pair))
        j = hist.indices[at].astype(np.int64)
        h = hist.data[at].astype(np.float32)
        # similarity S[j, i] by one search in the sorted keys of S
        keys = self._similarity_keys()
        q = j * self.n_items_ + items[pair]
        pos = np.minimum(np.searchsorted(keys, q), max(len(keys) - 1, 0))
        hit = (keys[pos] == q) if len(keys) else np.zeros(len(q), dtype=bool)
        contrib = np.where(hit, h * np.asarray(self.similarity_.data)[pos], 0.0).astype(np.float32)
        ok = contrib > 0
        pair, j, contrib = pair[ok], j[ok], contrib[ok]
        # strongest contribution per pair, ties to the lower item position
        order = np.lexsort((j, -contrib, pair))
        pair, j = pair[order], j[order]
        head = np.r_[True, pair[1:] != pair[:-1]] if len(pair) else np.zeros(0, dtype=bool)
        out[pair[head]] = j[head]
        return out

    def _similarity_keys(self) -> np.ndarray:
        """Sorted int64 keys ``j * n_items + i`` of the stored entries of ``similarity_``."""
        keys = getattr(self, "_sim_keys", None)
        if keys is None:
            sim = self.similarity_
            if not sim.has_sorted_indices:
                sim.sort_indices()
            rows = np.repeat(np.arange(sim.shape[0], dtype=np.int64), np.diff(sim.indptr))
            keys = rows * self.n_items_ + sim.indices
            self._sim_keys = keys
        return keys

    def _after_load(self) -> None:
        self._sim_keys = None
