"""Buy again: repurchasable items the user bought before, ranked by how due they are.

"Due" is the repurchase-timing model's probability of a repurchase in the next weeks
when that model has scored the pair (:meth:`BuyAgainRecommender.with_due_probability`),
else the cycle ratio of the item's median repurchase cycle.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Self

import numpy as np
import pandas as pd
from scipy import sparse

from features import contract as c

if TYPE_CHECKING:
    from models.recommender.interactions import IdMap

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
    due_ : csr_matrix or None
        Probability (0..1) that the user buys the item again in the next weeks, from the
        repurchase-timing model, for the (user position, item) pairs it scored; those
        pairs are scored by it instead of the cycle ratio. None: cycle ratio only.
    """

    kind = "buy_again"
    _sparse_scores = True
    _arrays = ("cycle_days_", "repurchasable_", "due_")
    _optional_arrays = ("due_",)

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
        self.due_: sparse.csr_matrix | None = None
        self.n_items_ = n
        return self

    def with_due_probability(self, due: sparse.csr_matrix) -> BuyAgainRecommender:
        """A copy that scores the pairs stored in ``due`` by their probability.

        Parameters
        ----------
        due : csr_matrix, shape (n_user_rows, n_items)
            Probability of a repurchase in the next weeks per (user position, item), see
            :func:`due_probability_matrix`. Users beyond its rows, and pairs it does not
            hold, keep the cycle-ratio score (the same 0..1 scale, 1 = due now).
        """
        self._check_fitted()
        due = sparse.csr_matrix(due, dtype=np.float32)
        if due.shape[1] != self.n_items_:
            raise ValueError(f"due must have {self.n_items_} columns, got {due.shape[1]}")
        if due.nnz and (
            not np.isfinite(due.data).all() or due.data.min() < 0 or due.data.max() > 1
        ):
            raise ValueError("due must hold probabilities in [0, 1]")
        due.sum_duplicates()
        out = copy.copy(self)
        out.due_ = due
        out._keys = None
        return out

    def _due_keys(self) -> np.ndarray:
        """Sorted int64 keys ``row * n_items + col`` of the stored entries of ``due_``."""
        keys = getattr(self, "_keys", None)
        if keys is None:
            due = self.due_
            if due is None:
                return np.empty(0, dtype=np.int64)
            rows = np.repeat(np.arange(due.shape[0], dtype=np.int64), np.diff(due.indptr))
            keys = rows * self.n_items_ + due.indices
            self._keys = keys
        return keys

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        coo = sparse.csr_matrix(rows).tocoo()
        keep = (coo.data > 0) & np.asarray(self.repurchasable_)[coo.col]
        r, col, age = coo.row[keep], coo.col[keep], coo.data[keep]
        ratio = age / np.asarray(self.cycle_days_)[col]
        score = np.minimum(ratio, 1.0 / ratio).astype(np.float32)
        due = getattr(self, "due_", None)
        if due is not None and due.nnz:
            keys = self._due_keys()
            u = np.asarray(user_ids, dtype=np.int64)[r]
            q = u * self.n_items_ + col
            at = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
            has = (keys[at] == q) & (u < due.shape[0])  # stored, even when exactly 0
            score = np.where(has, np.asarray(due.data)[at], score).astype(np.float32)
        return sparse.csr_matrix((score, (r, col)), shape=rows.shape)


def due_probability_matrix(
    pairs: pd.DataFrame, ids: IdMap, weeks: int = 2, n_rows: int | None = None
) -> sparse.csr_matrix:
    """Probability of a repurchase within ``weeks`` weeks per (customer, item) pair.

    Parameters
    ----------
    pairs : pd.DataFrame
        Repurchase-timing scores (``training.repurchase_scores.repurchase_table(...).pairs`` at item
        level): ``customer_id, item_id, p_week_1 .. p_week_W``.
    ids : IdMap
        Positions of customers and items; pairs of unknown ids are dropped.
    weeks : int, default 2
        Horizon of "due", weeks (sum of ``p_week_1..p_week_<weeks>``).
    n_rows : int, optional
        Rows of the result (default ``len(ids.users) + 1``).

    Returns
    -------
    csr_matrix of float32, shape (n_rows, n_items), values in [0, 1]
    """
    cols = [f"p_week_{w}" for w in range(1, weeks + 1)]
    missing = [k for k in (c.CUSTOMER_ID, c.ITEM_ID, *cols) if k not in pairs.columns]
    if missing:
        raise ValueError(f"pairs must have columns {missing}")
    p = np.clip(pairs[cols].to_numpy(dtype=np.float64).sum(axis=1), 0.0, 1.0)
    u = ids.user_pos(pairs[c.CUSTOMER_ID].astype(str).to_numpy())
    i = ids.item_pos(pairs[c.ITEM_ID].astype(str).to_numpy())
    ok = (u >= 0) & (i >= 0) & np.isfinite(p)
    shape = (n_rows if n_rows is not None else len(ids.users) + 1, len(ids.items))
    m = sparse.csr_matrix((p[ok].astype(np.float32), (u[ok], i[ok])), shape=shape)
    m.sum_duplicates()
    return m
