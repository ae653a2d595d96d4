"""Recently viewed: the items a user looked at most recently, newest first."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy import sparse

from models.recommender.base import Recommender, check_fit_input


class RecentlyViewedRecommender(Recommender):
    """Return the user's own recent items, ordered by a recency score.

    ``user_items`` given to ``recommend`` must be a *recency matrix*: each non-zero is a
    recency score that grows with recency, e.g. ``0.5 ** (days_since / half_life)``
    from :func:`models.recommender.interactions.recency_matrix`. Items the user never
    touched are not proposed (id ``-1``). ``fit`` only records the catalogue size.
    """

    kind = "recently_viewed"
    _sparse_scores = True

    def __init__(self) -> None:
        pass

    def fit(self, user_items: sparse.csr_matrix) -> Self:
        """Record the number of items; return ``self``."""
        self.n_items_ = int(check_fit_input(user_items).shape[1])
        return self

    def _score_sparse(
        self,
        user_ids: np.ndarray,
        rows: sparse.csr_matrix,
        n: int | None = None,
        exclude: sparse.csr_matrix | None = None,
    ) -> sparse.csr_matrix:
        return _positive(rows)


def _positive(m: sparse.csr_matrix) -> sparse.csr_matrix:
    """The strictly positive stored entries of ``m`` as float32."""
    coo = sparse.csr_matrix(m).tocoo()
    keep = coo.data > 0
    return sparse.csr_matrix(
        (coo.data[keep].astype(np.float32), (coo.row[keep], coo.col[keep])), shape=m.shape
    )
