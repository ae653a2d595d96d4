"""Buy again: repurchasable items the user bought before, ranked by how due they are."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender, check_fit_input


class BuyAgainRecommender(Recommender):
    """Propose a user's past repurchasable purchases when they are due again.

    ``user_items`` given to ``recommend`` must be a *purchase-age matrix*: each non-zero
    is ``1 + days since the user's last purchase of the item`` (see
    :func:`models.recommender.interactions.purchase_age_matrix`). With ``ratio = age /
    cycle`` (the item's median repurchase cycle in days) the score is
    ``min(ratio, 1 / ratio)``: 1.0 exactly when the item is due, lower before and after.

    Parameters
    ----------
    default_cycle_days : float, default 30.0
        Cycle used for items without a measured one.

    Attributes
    ----------
    cycle_days_ : ndarray of float32, shape (n_items,)
        Repurchase cycle per item, days.
    repurchasable_ : ndarray of bool, shape (n_items,)
        Items that may be proposed.
    """

    kind = "buy_again"
    _sparse_scores = True
    _arrays = ("cycle_days_", "repurchasable_")

    def __init__(self, default_cycle_days: float = 30.0):
        self.default_cycle_days = default_cycle_days

    def fit(
        self,
        user_items: sparse.csr_matrix,
        *,
        item_cycle_days: np.ndarray | None = None,
        repurchasable: np.ndarray | None = None,
    ) -> Self:
        """Store per-item cycles and the repurchasable mask; return ``self``.

        Parameters
        ----------
        user_items : csr_matrix, shape (n_users, n_items)
            Any interaction matrix of the catalogue (only its width is used).
        item_cycle_days : ndarray of float, shape (n_items,), optional
            Median days between two purchases of the same item by the same customer;
            NaN or missing: ``default_cycle_days``.
        repurchasable : ndarray of bool, shape (n_items,), optional
            Default: every item.
        """
        if not self.default_cycle_days > 0:
            raise ValueError(f"default_cycle_days must be positive, got {self.default_cycle_days}")
        n = int(check_fit_input(user_items).shape[1])
        cycle = np.full(n, self.default_cycle_days, dtype=np.float64)
        if item_cycle_days is not None:
            given = np.asarray(item_cycle_days, dtype=np.float64)
            if given.shape != (n,):
                raise ValueError(f"item_cycle_days must have shape ({n},), got {given.shape}")
            ok = np.isfinite(given) & (given > 0)
            cycle[ok] = given[ok]
        mask = np.ones(n, dtype=bool) if repurchasable is None else np.asarray(repurchasable, bool)
        if mask.shape != (n,):
            raise ValueError(f"repurchasable must have shape ({n},), got {mask.shape}")
        self.cycle_days_ = cycle.astype(np.float32)
        self.repurchasable_ = mask
        self.n_items_ = n
        return self

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        coo = sparse.csr_matrix(rows).tocoo()
        keep = (coo.data > 0) & np.asarray(self.repurchasable_)[coo.col]
        r, c, age = coo.row[keep], coo.col[keep], coo.data[keep]
        ratio = age / np.asarray(self.cycle_days_)[c]
        score = np.minimum(ratio, 1.0 / ratio).astype(np.float32)
        return sparse.csr_matrix((score, (r, c)), shape=rows.shape)
