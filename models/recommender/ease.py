"""EASE: embarrassingly shallow autoencoder (Steck 2019), closed form in numpy."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender, check_fit_input


class EASERecommender(Recommender):
    """Item-item linear model ``B`` with zero diagonal, solved in closed form.

    ``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + l2 I)^-1``; the score of user
    ``u`` is ``x_u B``. Memory is ``n_items^2`` floats, so it suits catalogues up to a
    few ten thousand items.

    Parameters
    ----------
    l2 : float, default 500.0
        L2 regularisation of the item-item weights.
    binary : bool, default True
        Fit and score on ``x > 0`` instead of the confidences.

    Attributes
    ----------
    weights_ : ndarray of float32, shape (n_items, n_items)
    """

    kind = "ease"
    _arrays = ("weights_",)

    def __init__(self, l2: float = 500.0, binary: bool = True):
        self.l2 = l2
        self.binary = binary

    def _prep(self, m: sparse.csr_matrix) -> sparse.csr_matrix:
        return (m > 0).astype(np.float32) if self.binary else m.astype(np.float32)

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Solve for the item-item weights; return ``self``."""
        if self.l2 <= 0:
            raise ValueError(f"l2 must be positive, got {self.l2}")
        x = self._prep(check_fit_input(user_items))
        gram = np.asarray((x.T @ x).todense(), dtype=np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)
        b[np.diag_indices_from(b)] = 0.0
        self.weights_ = b.astype(np.float32)
        self.n_items_ = int(x.shape[1])
        return self

    def _score_block(self, user_ids: np.ndarray, rows: sparse.csr_matrix) -> np.ndarray:
        return np.asarray(self._prep(rows) @ self.weights_, dtype=np.float32)
