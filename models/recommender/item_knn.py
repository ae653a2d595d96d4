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
        return self

    def _history(self, rows: sparse.csr_matrix) -> sparse.csr_matrix:
        return (rows > 0).astype(np.float32) if self.binary_history else rows

    def _score_block(self, user_ids: np.ndarray, rows: sparse.csr_matrix) -> np.ndarray:
        s = (self._history(rows) @ self.similarity_).tocsr()
        out = np.full(rows.shape, -np.inf, dtype=np.float32)
        coo = s.tocoo()
        keep = coo.data > 0
        out[coo.row[keep], coo.col[keep]] = coo.data[keep]
        return out

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
        sim_t = self.similarity_.T.tocsr()
        hist = self._history(sparse.csr_matrix(user_items))
        out = np.full(len(user_ids), -1, dtype=np.int32)
        for k, (u, i) in enumerate(zip(user_ids, item_ids, strict=True)):
            if i < 0:
                continue
            h = hist[u]
            lo, hi = sim_t.indptr[i], sim_t.indptr[i + 1]
            nbr, w = sim_t.indices[lo:hi], sim_t.data[lo:hi]
            common, a, b = np.intersect1d(nbr, h.indices, return_indices=True)
            if common.size:
                contrib = w[a] * h.data[b]
                out[k] = common[np.argmax(contrib)]
        return out
